import Foundation
import Tensors
import TestSupport
import Testing

@testable import Checkpoints

/// Zips and pickles built byte by byte, as an attacker would build them.
enum Forge {
    static func le(_ value: UInt64, _ bytes: Int) -> [UInt8] { (0..<bytes).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) } }

    struct Member {
        var name: String
        var data: [UInt8]
        var method: UInt16 = 0
        /// What the directory declares, when it lies.
        var size: UInt32?
        var compressedSize: UInt32?
        var crc: UInt32?
        var extra: [UInt8] = []
    }

    /// A zip of `members` (local headers, central directory, end record); `end` replaces the end record.
    static func zip(_ members: [Member], end: (([UInt8], Int, Int) -> [UInt8])? = nil) -> [UInt8] {
        var out: [UInt8] = [], directory: [UInt8] = []
        for m in members {
            let crc = m.crc ?? Data(m.data).crc32()
            let name = Array(m.name.utf8), offset = out.count
            let sizes = le(UInt64(m.compressedSize ?? UInt32(m.data.count)), 4) + le(UInt64(m.size ?? UInt32(m.data.count)), 4)
            out += le(0x0403_4B50, 4) + le(20, 2) + le(0, 2) + le(UInt64(m.method), 2) + le(0, 4) + le(UInt64(crc), 4) + sizes
            out += le(UInt64(name.count), 2) + le(0, 2) + name + m.data
            directory += le(0x0201_4B50, 4) + le(20, 2) + le(20, 2) + le(0, 2) + le(UInt64(m.method), 2) + le(0, 4) + le(UInt64(crc), 4)
            directory += sizes + le(UInt64(name.count), 2) + le(UInt64(m.extra.count), 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4)
            directory += le(UInt64(offset), 4) + name + m.extra
        }
        let directoryOffset = out.count
        out += directory
        if let end { return out + end(out, directoryOffset, directory.count) }
        return out + le(0x0605_4B50, 4) + le(0, 4) + le(UInt64(members.count), 2) + le(UInt64(members.count), 2)
            + le(UInt64(directory.count), 4) + le(UInt64(directoryOffset), 4) + le(0, 2)
    }

    // Pickle opcodes, protocol 2.
    static func text(_ s: String) -> [UInt8] { [0x58] + le(UInt64(s.utf8.count), 4) + Array(s.utf8) }
    static func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
    static func int(_ v: Int) -> [UInt8] { [0x8A, 8] + le(UInt64(bitPattern: Int64(v)), 8) }
    static func tuple(_ items: [[UInt8]]) -> [UInt8] { [0x28] + items.flatMap { $0 } + [0x74] }

    /// `{name: _rebuild_tensor_v2(storage key, offset, shape, strides)}` for each tensor, float32 storages.
    static func stateDict(_ tensors: [(name: String, key: String, elements: Int, offset: Int, shape: [Int], strides: [Int])]) -> [UInt8] {
        var p: [UInt8] = [0x80, 2, 0x7D]
        for t in tensors {
            let storage = tuple([text("storage"), global("torch", "FloatStorage"), text(t.key), text("cpu"), int(t.elements)]) + [0x51]
            let arguments = tuple([
                storage, int(t.offset), tuple(t.shape.map(int)), tuple(t.strides.map(int)), [0x89],
                global("collections", "OrderedDict") + [0x29, 0x52]
            ])
            p += text(t.name) + global("torch._utils", "_rebuild_tensor_v2") + arguments + [0x52, 0x73]
        }
        return p + [0x2E]
    }

    /// A torch.save zip: `archive/data.pkl`, `archive/byteorder`, `archive/data/<key>` for each storage.
    static func pth(_ pickle: [UInt8], storages: [String: [Float]]) -> [UInt8] {
        var members = [Member(name: "archive/data.pkl", data: pickle), Member(name: "archive/byteorder", data: Array("little".utf8))]
        for (key, values) in storages.sorted(by: { $0.key < $1.key }) {
            members.append(Member(name: "archive/data/\(key)", data: values.flatMap { le(UInt64($0.bitPattern), 4) }))
        }
        return zip(members)
    }
}

/// The `.pth` zip layer and views, second round (issue 46): each hostile file is one clear error naming it, or reads
/// as what it honestly holds; none traps, hangs or fills memory.
@Suite struct HostileZipTests {
    let folder: URL
    init() throws { folder = try temporaryFolder("swiftvit-hostile-zip") }

    func write(_ bytes: [UInt8], _ name: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }

    func expectError(_ bytes: [UInt8], _ name: String, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let url = try write(bytes, name)
        #expect(sourceLocation: sourceLocation) { try PyTorchCheckpoint.read(url) } throws: { error in
            let text = "\(error)"
            let ok = text.contains(name) && text.contains(reason)
            if !ok { print("\(name): \(text)") }
            return ok
        }
    }

    @Test func aForgedCheckpointReadsAsItsViews() throws {
        let pickle = Forge.stateDict([
            ("w", "0", 4, 0, [2, 2], [2, 1]), ("t", "0", 4, 0, [2, 2], [1, 2]),
            // A stride of Int.max over an axis of size 1: never stepped on, but the walk steps past the last element.
            ("big", "0", 4, 1, [1, 2], [Int.max, 1]), ("none", "0", 4, 1 << 62, [0], [1])
        ])
        let url = try write(Forge.pth(pickle, storages: ["0": [1, 2, 3, 4]]), "forged.pth")
        let tensors = try PyTorchCheckpoint.read(url)
        #expect(tensors["w"]?.toArray() == [1, 2, 3, 4])
        #expect(tensors["t"]?.toArray() == [1, 3, 2, 4])
        #expect(tensors["big"]?.toArray() == [2, 3])
        #expect(tensors["none"]?.shape == [0])
    }

    @Test func viewsPastTheirStorageOrRepeatingTheirElementsAreRefused() throws {
        for (name, offset, shape, strides, reason) in [
            ("offset.pth", 1 << 62, [1], [1], "reads past the end"),
            ("offset-max.pth", Int.max, [1], [1], "reads past the end"),
            ("stride.pth", 0, [2, 2], [Int.max, 1], "reads past the end"),
            ("zero-strides.pth", 0, [20_000, 20_000], [0, 0], "zero strides"),
            ("huge.pth", 0, [1 << 40, 1 << 40], [0, 0], "more elements")
        ] {
            try expectError(
                Forge.pth(Forge.stateDict([("w", "0", 4, offset, shape, strides)]), storages: ["0": [1, 2, 3, 4]]), name, reason)
        }
    }

    @Test func brokenZipLayersAreOneLine() throws {
        let good = Forge.pth(Forge.stateDict([("w", "0", 4, 0, [4], [1])]), storages: ["0": [1, 2, 3, 4]])
        // A partial download: cut before its central directory.
        try expectError(Array(good.prefix(good.count / 2)), "cut.pth", "truncated")
        // A flipped byte in a stored storage: its CRC-32 is compared.
        var flipped = good
        let three = Forge.le(UInt64(Float(3).bitPattern), 4)
        let at = try #require((0..<(good.count - 4)).first { Array(good[$0..<($0 + 4)]) == three })
        flipped[at] ^= 0x10
        try expectError(flipped, "flipped.pth", "CRC-32")
        // ZIP64 end records pointing at 2^63 and past the file.
        for (name, value) in [("zip64-2e63.pth", UInt64(1) << 63), ("zip64-max.pth", UInt64.max), ("zip64-past.pth", UInt64(1) << 40)] {
            let members = [
                Forge.Member(name: "archive/data.pkl", data: Forge.stateDict([]))
            ]
            let bytes = Forge.zip(members) { _, directoryOffset, directorySize in
                let record =
                    Forge.le(0x0606_4B50, 4) + Forge.le(44, 8) + Forge.le(45, 2) + Forge.le(45, 2) + Forge.le(0, 8)
                    + Forge.le(1, 8) + Forge.le(1, 8) + Forge.le(UInt64(directorySize), 8) + Forge.le(value, 8)
                let locator =
                    Forge.le(0x0706_4B50, 4) + Forge.le(0, 4) + Forge.le(UInt64(directoryOffset + directorySize), 8) + Forge.le(1, 4)
                let end =
                    Forge.le(0x0605_4B50, 4) + Forge.le(0, 4) + Forge.le(0xFFFF, 2) + Forge.le(0xFFFF, 2) + Forge.le(0xFFFF_FFFF, 4)
                    + Forge.le(0xFFFF_FFFF, 4) + Forge.le(0, 2)
                return record + locator + end
            }
            try expectError(bytes, name, "not a readable zip")
        }
        // A ZIP64 size of 2^62 (and one of 2^63) for the pickle.
        for (name, size, reason) in [
            ("size-2e62.pth", UInt64(1) << 62, "corrupt"), ("size-2e63.pth", UInt64(1) << 63, "corrupt"),
            ("size-1tb.pth", UInt64(1) << 40, "but declares")
        ] {
            let extra = Forge.le(1, 2) + Forge.le(8, 2) + Forge.le(size, 8)
            let member = Forge.Member(name: "archive/data.pkl", data: Forge.stateDict([]), size: 0xFFFF_FFFF, extra: extra)
            try expectError(Forge.zip([member]), name, reason)
        }
    }

    /// Every input a fuzzer once broke reads to one error naming it; a stored member declaring 4 GiB in a small file
    /// is refused before anything is allocated.
    @Test func fuzzRegressionsAreErrors() throws {
        let folder = Fixtures.url("CheckpointsTests", "fuzz-regressions")
        let inputs = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".pth") }
        #expect(!inputs.isEmpty)
        for name in inputs {
            #expect { try PyTorchCheckpoint.read(folder.appendingPathComponent(name)) } throws: { "\($0)".contains(name) }
        }
        let member = Forge.Member(
            name: "archive/data/0", data: Array(repeating: 1, count: 64), size: 0xFFFF_0000, compressedSize: 0xFFFF_0000)
        let pickle = Forge.Member(name: "archive/data.pkl", data: Forge.stateDict([("w", "0", 1, 0, [1], [1])]))
        try expectError(Forge.zip([pickle, member]), "stored-4gib.pth", "outside the file")
    }

    /// A deflated member inflates into exactly the size it declares: no more (a bomb stops there), no less, and its
    /// stream must end within the file.
    @Test func deflatedMembersInflateToTheirDeclaredSizeOnly() throws {
        let pickle = Forge.stateDict([("w", "0", 1, 0, [1], [1])])
        // A deflate stream of one stored block: final bit, type 00, length, its complement, the bytes.
        func deflated(_ data: [UInt8]) -> [UInt8] {
            [0x01] + Forge.le(UInt64(data.count), 2) + Forge.le(UInt64(~UInt16(data.count)), 2) + data
        }
        let storage = Forge.le(UInt64(Float(7).bitPattern), 4)
        func pth(_ member: Forge.Member) -> [UInt8] {
            Forge.zip([
                Forge.Member(name: "archive/data.pkl", data: pickle), Forge.Member(name: "archive/byteorder", data: Array("little".utf8)),
                member
            ])
        }
        let honest = try write(
            pth(Forge.Member(name: "archive/data/0", data: deflated(storage), method: 8, size: 4, crc: Data(storage).crc32())),
            "deflated.pth")
        #expect(try PyTorchCheckpoint.read(honest)["w"]?.toArray() == [7])
        try expectError(
            pth(Forge.Member(name: "archive/data/0", data: deflated(storage + storage), method: 8, size: 4, crc: Data(storage).crc32())),
            "more.pth", "inflates past")
        try expectError(
            pth(
                Forge.Member(
                    name: "archive/data/0", data: Array(deflated(storage).prefix(6)), method: 8, size: 4, crc: Data(storage).crc32())),
            "cut-stream.pth", "ends early")
        try expectError(
            pth(Forge.Member(name: "archive/data/0", data: deflated(storage), method: 8, size: 4, compressedSize: 1 << 30, crc: 0)),
            "past-file.pth", "outside the file")
        try expectError(
            pth(Forge.Member(name: "archive/data/0", data: deflated(storage), method: 8, size: 0xFFFF_FFF0, crc: 0)),
            "bomb.pth", "more than deflate can produce")
        // 65 KB of deflate that claim 20 MiB (that much deflate can hold 67 MB of zeros): a bomb, refused before anything
        // is inflated.
        try expectError(
            pth(
                Forge.Member(
                    name: "archive/data/0", data: deflated([UInt8](repeating: 0, count: 65_000)), method: 8, size: 20 << 20, crc: 0)
            ),
            "ratio.pth", "decompression bomb")
    }

    /// Thousands of storages (each found through the directory's index) and a `module.` prefix thousands deep
    /// (stripped in one pass) read as what they are.
    @Test func manyStoragesAndDeepPrefixesReadCorrectly() throws {
        let count = 5_000
        let pickle = Forge.stateDict((0..<count).map { ("module.t\($0)", "\($0)", 1, 0, [1], [1]) })
        let storages = Dictionary(uniqueKeysWithValues: (0..<count).map { ("\($0)", [Float($0)]) })
        let many = try PyTorchCheckpoint.read(try write(Forge.pth(pickle, storages: storages), "many.pth"))
        #expect(many.count == count && many["t4999"]?.toArray() == [4999])
        let deep = String(repeating: "module.", count: 20_000)
        let names = PyTorchCheckpoint.wrapperPrefix([deep + "a", deep + "model.b"])
        #expect(names == deep)
        #expect(PyTorchCheckpoint.wrapperPrefix(["module.model.a", "module.model.b"]) == "module.model.")
        #expect(PyTorchCheckpoint.wrapperPrefix(["module.a", "model.b"]).isEmpty)
        #expect(PyTorchCheckpoint.wrapperPrefix(["module.model.a", "module.b"]) == "module.")
    }

    /// A legacy stream whose "magic number" is a million nested persistent ids, and one whose object is a tuple graph
    /// sharing each level twice (2^60 paths): errors, without a stack overflow or an exponential walk.
    @Test func nestedPersistentIdsAndSharedTuplesAreBounded() throws {
        try expectError([0x80, 2, 0x4E] + [UInt8](repeating: 0x51, count: 1_000_001) + [0x2E], "persistent.pth", "more than 1000000")
        let magic: [UInt8] = [0x80, 2, 0x8A, 10, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E]
        let shared: [UInt8] =
            [0x80, 2, 0x7D, 0x58, 1, 0, 0, 0, 0x61, 0x4E] + [UInt8](repeating: 0, count: 60).flatMap { _ in [0x32, 0x86] } + [0x73, 0x2E]
        try expectError(
            magic + [0x80, 2, 0x4B, 2, 0x2E] + [0x80, 2, 0x7D, 0x2E] + shared + [0x80, 2, 0x5D, 0x2E], "shared.pth", "no state dict")
    }
}
