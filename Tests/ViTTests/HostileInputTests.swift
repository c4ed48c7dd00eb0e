import Checkpoints
import Foundation
import Tensors
import Testing
import TestSupport
@testable import ViT

/// Damaged and hostile checkpoints: every one is a thrown error naming the file and what is wrong, never a trap.
/// (A trap would end the test process: these tests pass only if each load returns.)
@Suite struct HostileInputTests {
    static let timm = fixture("timm-vit-p8-d64-h4-l2-i32")

    /// The timm fixture with its tensors edited, as a folder (weights + the fixture's config).
    func folder(editing edit: (inout [String: Tensor]) -> Void) throws -> URL {
        let folder = try temporaryFolder("swiftvit-hostile")
        var tensors = try SafetensorsFile(contentsOf: Self.timm.appendingPathComponent("model.safetensors")).allTensors()
        edit(&tensors)
        try Safetensors.write(tensors, to: folder.appendingPathComponent("model.safetensors"))
        try FileManager.default.copyItem(
            at: Self.timm.appendingPathComponent("config.json"), to: folder.appendingPathComponent("config.json"))
        return folder
    }

    func expectRefused(_ folder: URL, _ reason: String) {
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect {
            try CheckpointLoader().load(folder)
        } throws: { error in
            "\(error)".contains(folder.path) && "\(error)".contains(reason)
        }
    }

    static let tensorEdits: [(String, @Sendable (inout [String: Tensor]) -> Void, String)] = [
        ("no pos_embed", { $0.removeValue(forKey: "pos_embed") }, "no pos_embed"),
        ("pos_embed of rank 2", { $0["pos_embed"] = Tensor.zeros([17, 64]) }, "pos_embed has shape [17, 64]"),
        ("pos_embed of no positions", { $0["pos_embed"] = Tensor.zeros([1, 0, 64]) }, "pos_embed has shape [1, 0, 64]"),
        ("pos_embed of fewer positions than prefix tokens", { $0["pos_embed"] = Tensor.zeros([1, 0, 64]) }, "pos_embed"),
        ("pos_embed of another width", { $0["pos_embed"] = Tensor.zeros([1, 17, 32]) }, "pos_embed has shape [1, 17, 32]"),
        ("head of rank 1", { $0["head.weight"] = Tensor.zeros([10]) }, "head.weight has shape [10]"),
        ("fc1 of rank 1", { $0["blocks.0.mlp.fc1.weight"] = Tensor.zeros([256]) }, "blocks.0.mlp.fc1.weight has shape [256]"),
        ("a zero patch kernel", { $0["patch_embed.proj.weight"] = Tensor.zeros([64, 3, 0, 0]) }, "patch_embed.proj.weight has shape"),
        ("a non-square patch kernel", { $0["patch_embed.proj.weight"] = Tensor.zeros([64, 3, 8, 4]) }, "square"),
        (
            "a NaN weight",
            { t in
                let w = t["blocks.1.attn.qkv.weight"]!.copy()
                w.pointer[5] = .nan
                t["blocks.1.attn.qkv.weight"] = w
            }, "NaN or infinite values (blocks.1.attn.qkv.weight)"
        ),
        (
            "an infinite weight",
            { t in
                let w = t["head.bias"]!.copy()
                w.pointer[0] = -.infinity
                t["head.bias"] = w
            }, "NaN or infinite values (head.bias)"
        )
    ]

    @Test(arguments: tensorEdits.indices)
    func damagedTensorsAreRefused(index: Int) throws {
        let (what, edit, reason) = Self.tensorEdits[index]
        let folder = try folder(editing: edit)
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(throws: (any Error).self, "\(what)") { try CheckpointLoader().load(folder) }
        expectRefused(folder, reason)
    }

    /// A native folder (its config states every field, under "swiftvit") with one field of that config edited.
    static let configEdits: [(String, Any, String)] = [
        ("patchSize", 1 << 62, "patchSize is 4611686018427387904 in the configuration but 8 in the weights"),
        ("patchSize", 0, "patchSize is 0 in the configuration"), ("dropout", 2, "dropout rate 2"),
        ("dropPath", -5, "drop path rate -5"), ("layerNormEps", 0, "layer-norm eps"), ("heads", 0, "heads 0"),
        ("imageSize", -32, "imageSize is -32 in the configuration"), ("imageSize", 1 << 40, "imageSize is 1099511627776"),
        ("width", 1 << 40, "width is 1099511627776 in the configuration but 64")
    ]
    static let dataEdits: [(String, Any, String)] = [
        ("cropPct", 0, "crop_pct 0"), ("cropPct", -1, "crop_pct -1"), ("cropPct", 2, "crop_pct 2"),
        ("cropPct", 1e30, "crop_pct 1e+30"), ("cropPct", 1e-9, "resizes to"), ("mean", [0.5, 0.5], "mean [0.5, 0.5]"),
        ("std", [0.5, 0, 0.5], "std [0.5, 0.0, 0.5]")
    ]

    func nativeFolder(editing key: String, in section: String?, to value: Any) throws -> URL {
        let folder = try temporaryFolder("swiftvit-hostile")
        try NativeFormat.save(try CheckpointLoader().load(Self.timm), to: folder)
        let url = folder.appendingPathComponent("config.json")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        var native = json["swiftvit"] as! [String: Any]
        if let section {
            var inner = native[section] as! [String: Any]
            inner[key] = value
            native[section] = inner
        } else {
            native[key] = value
        }
        json["swiftvit"] = native
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        return folder
    }

    @Test(arguments: configEdits.indices)
    func outOfRangeArchitectureValuesAreRefused(index: Int) throws {
        let (key, value, reason) = Self.configEdits[index]
        expectRefused(try nativeFolder(editing: key, in: nil, to: value), reason)
    }

    @Test(arguments: dataEdits.indices)
    func outOfRangePreprocessingValuesAreRefused(index: Int) throws {
        let (key, value, reason) = Self.dataEdits[index]
        expectRefused(try nativeFolder(editing: key, in: "data", to: value), reason)
    }

    /// JAX kernels of the wrong rank are refused before they are permuted, transposed or reshaped.
    @Test func jaxKernelsOfTheWrongRankAreRefused() {
        for (name, shape) in [
            ("embedding/kernel", [8, 8, 3]), ("head/kernel", [64]), ("Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel", [64]),
            ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel", [0, 4, 16]),
            ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/kernel", [4, 16, 0])
        ] {
            #expect(throws: LayoutError.self, "\(name) \(shape)") { try JaxLayout.toTimm([name: Tensor.zeros(shape)]) }
        }
        let q = Tensor.zeros([64, 4, 16]), k = Tensor.zeros([64, 4, 8])
        let block = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/"
        #expect(throws: LayoutError.self) {
            try JaxLayout.toTimm([block + "query/kernel": q, block + "key/kernel": k, block + "value/kernel": q])
        }
    }

    /// numpy stores npz members uncompressed, and every member's CRC-32 is compared (ZipArchive): flipped bytes in a kernel
    /// used to load as a model.
    @Test func flippedBytesInAnNpzMemberFailItsCRC() throws {
        var bytes = [UInt8](try Data(contentsOf: fixture("jax-vit-p8-d64-h4-l2-i32").appendingPathComponent("model.npz")))
        let name = Array("MlpBlock_3/Dense_0/kernel.npy".utf8)
        let at = try #require((0..<(bytes.count - name.count)).first { bytes[$0..<($0 + name.count)].elementsEqual(name) })
        let nameStart = at - "Transformer/encoderblock_0/".utf8.count
        let extra = Int(bytes[nameStart - 2]) | Int(bytes[nameStart - 1]) << 8
        let data = nameStart + "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel.npy".utf8.count + extra
        for i in (data + 200)..<(data + 216) { bytes[i] ^= 0xFF }
        let folder = try temporaryFolder("swiftvit-hostile")
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.npz")
        try Data(bytes).write(to: url)
        #expect { try Npz.read(url) } throws: { "\($0)".contains(url.path) && "\($0)".contains("CRC-32") }
    }
}
