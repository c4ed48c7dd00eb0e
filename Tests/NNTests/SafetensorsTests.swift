import Checkpoints
import Foundation
import Tensors
import Testing

@Suite struct SafetensorsTests {
    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func roundTripKeepsNamesShapesValuesAndMetadata() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("model.safetensors")
        let tensors = ["a.weight": Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), "b": Tensor(scalar: -1.5)]
        try Safetensors.write(tensors, metadata: ["format": "pt"], to: url)
        let file = try SafetensorsFile(contentsOf: url)
        #expect(file.names == ["a.weight", "b"])
        #expect(file.metadata["format"] == "pt")
        #expect(try file.tensor("a.weight").shape == [2, 3])
        #expect(try file.tensor("a.weight").toArray() == [1, 2, 3, 4, 5, 6])
        #expect(try file.tensor("b").item() == -1.5)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(leftovers == ["model.safetensors"], "temporary files left behind: \(leftovers)")
    }

    @Test func truncatedAndMissingFilesAreReportedWithTheirPath() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("model.safetensors")
        try Safetensors.write(["w": Tensor.ones([100])], to: url)
        let bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 10).write(to: url)
        #expect {
            try SafetensorsFile(contentsOf: url)
        } throws: { error in
            let text = "\(error)"
            return text.contains(url.path) && text.contains("truncated")
        }
        let missing = directory.appendingPathComponent("absent.safetensors")
        #expect {
            try SafetensorsFile(contentsOf: missing)
        } throws: { "\($0)".contains("absent.safetensors") && "\($0)".contains("no such file") }
        try Data("not a checkpoint".utf8).write(to: url)
        #expect(throws: CheckpointError.self) { try SafetensorsFile(contentsOf: url) }
    }
}
