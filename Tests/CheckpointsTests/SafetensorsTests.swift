import Checkpoints
import Foundation
import Tensors
import TestSupport
import Testing

@Suite struct SafetensorsTests {
    @Test func roundTripKeepsNamesShapesValuesAndMetadata() throws {
        let directory = try temporaryFolder()
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
        let directory = try temporaryFolder()
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

    /// The header parser reads what JSON allows in names (escapes, \u escapes, surrogate pairs), metadata and unknown
    /// entry members, and refuses what is not one JSON object of entries.
    @Test func safetensorsHeadersParseAsJSON() throws {
        let folder = try temporaryFolder("swiftvit-hostile")
        defer { try? FileManager.default.removeItem(at: folder) }
        func file(_ header: String, data: Int = 8) throws -> URL {
            let url = folder.appendingPathComponent("\(UUID().uuidString).safetensors")
            var bytes = Data()
            withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(Data(header.utf8))
            bytes.append(Data(count: data))
            try bytes.write(to: url)
            return url
        }
        let parsed = try SafetensorsFile(
            contentsOf: try file(
                #" { "__metadata__" : {"format": "pt", "k\"ey": "v\n"}, "a\"b\\c\/\u00e9\ud83d\ude00" : { "extra": [1, {"x": null}, true, -2.5e3], "dtype":"F32","shape":[2],"data_offsets":[0,8]} }   "#
            ))
        #expect(parsed.names == ["a\"b\\c/é😀"])
        #expect(parsed.metadata == ["format": "pt", "k\"ey": "v\n"])
        #expect(try parsed.tensor("a\"b\\c/é😀").shape == [2])
        for (header, reason) in [
            (#"[]"#, "expected '{'"), (#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}} x"#, "text after"),
            (#"{"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}"#, "not an integer"),
            (#"{"a": {"dtype": "F32", "shape": [99999999999999999999], "data_offsets": [0, 8]}}"#, "overflows"),
            (#"{"a": {"dtype": "F32", "shape": [2]}}"#, "lacks dtype, shape or data_offsets"),
            (#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": "#, "ends early"),
            (#"{"a\ud800": {}}"#, "unpaired surrogate"),
            ("{\"a\": {\"x\": " + String(repeating: "[", count: 100) + "}}", "nested too deeply"),
            (
                #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#,
                "twice"
            )
        ] {
            let url = try file(header)
            #expect { try SafetensorsFile(contentsOf: url) } throws: { "\($0)".contains(url.path) && "\($0)".contains(reason) }
        }
    }

    /// safetensors headers: the format's 100 MB cap, and shapes whose product is negative or overflows.
    @Test func safetensorsHeadersAreBoundedAndChecked() throws {
        let folder = try temporaryFolder("swiftvit-hostile")
        defer { try? FileManager.default.removeItem(at: folder) }
        func file(_ header: String, length: UInt64? = nil, padding: Int = 0) throws -> URL {
            let url = folder.appendingPathComponent("\(UUID().uuidString).safetensors")
            let body = Data(header.utf8)
            var data = Data()
            withUnsafeBytes(of: (length ?? UInt64(body.count)).littleEndian) { data.append(contentsOf: $0) }
            data.append(body)
            data.append(Data(count: padding))
            try data.write(to: url)
            return url
        }
        let cases: [(URL, String)] = [
            (try file("{}", length: 200_000_000), "more than the format's limit"),
            (try file(#"{"a": {"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}}"#, padding: 16), "negative"),
            (try file(#"{"a": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 16]}}"#, padding: 16), "overflows"),
            (
                try file(#"{"a": {"dtype": "F32", "shape": [1152921504606846976, 2], "data_offsets": [0, 16]}}"#, padding: 16),
                "bytes for shape"
            ),
            (try file(#"{"a": {"dtype": "F32", "shape": [1, 1, 1, 1, 1, 1, 1], "data_offsets": [0, 4]}}"#, padding: 4), "rank 7, above")
        ]
        for (url, reason) in cases {
            #expect { try SafetensorsFile(contentsOf: url) } throws: { "\($0)".contains(url.path) && "\($0)".contains(reason) }
        }
    }
}
