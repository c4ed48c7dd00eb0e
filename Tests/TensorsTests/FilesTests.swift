import Foundation
import Tensors
import TestSupport
import Testing

@Suite struct FilesTests {
    /// What a killed run leaves (`.NAME.PID.tmp` of a process that no longer runs) is removed; a live process's
    /// temporary file and anything else stay.
    @Test func staleTemporariesOfDeadProcessesAreRemoved() throws {
        let folder = try temporaryFolder("swiftvit-files")
        defer { try? FileManager.default.removeItem(at: folder) }
        // A PID that runs nothing: the largest one Linux can hand out, checked.
        let dead = pid_t(4_194_303)
        try #require(kill(dead, 0) != 0 && errno == ESRCH)
        let names = [
            ".checkpoint.safetensors.\(dead).tmp", ".model.safetensors.\(getpid()).tmp", ".config.json.1.tmp",
            "model.safetensors", ".hidden", "notes.tmp"
        ]
        for name in names { try Data("x".utf8).write(to: folder.appendingPathComponent(name)) }
        let removed = AtomicFile.removeStaleTemporaries(in: folder)
        #expect(removed == [".checkpoint.safetensors.\(dead).tmp"])
        let left = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        #expect(left == names.filter { $0 != removed.first }.sorted())
    }

    /// A write lands whole or not at all: the destination is never a partial file.
    @Test func atomicWritesReplaceWholeFiles() throws {
        let folder = try temporaryFolder("swiftvit-files")
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("a.bin")
        try AtomicFile.write(Data(count: 1000), to: url)
        try AtomicFile.write(Data(repeating: 7, count: 10), to: url)
        #expect(try Data(contentsOf: url) == Data(repeating: 7, count: 10))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["a.bin"])
        #expect(throws: FileError.self) { try AtomicFile.write(Data(), to: folder.appendingPathComponent("missing/a.bin")) }
    }
}
