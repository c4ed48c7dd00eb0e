import Checkpoints
import Foundation
import Tensors
import TestSupport
import Testing

@testable import ViT

/// A ResNet's config.json, second round (issue 46): its data configuration is validated as a ViT's is (the same
/// `DataConfig.problems`), each problem named by the file, and a size that cannot run in memory is refused before a
/// model is built.
@Suite struct HostileResNetConfigTests {
    static let source = fixture("timm-resnet-basic1111-w16-i32")

    /// A copy of the timm ResNet fixture with `pretrained_cfg[key] = value`.
    func folder(_ key: String, _ value: Any) throws -> URL {
        let folder = try temporaryFolder("swiftvit-hostile-resnet")
        try FileManager.default.copyItem(
            at: Self.source.appendingPathComponent("model.safetensors"), to: folder.appendingPathComponent("model.safetensors"))
        var json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: Self.source.appendingPathComponent("config.json"))) as! [String: Any]
        var cfg = json["pretrained_cfg"] as! [String: Any]
        cfg[key] = value
        json["pretrained_cfg"] = cfg
        try JSONSerialization.data(withJSONObject: json).write(to: folder.appendingPathComponent("config.json"))
        return folder
    }

    @Test(arguments: [
        ("crop_pct", 0 as Any, "crop_pct 0.0 is outside (0, 1]"), ("crop_pct", -1, "crop_pct -1.0 is outside"),
        ("crop_pct", 1e30, "is outside (0, 1]"), ("crop_pct", "wide", "crop_pct is \"wide\", not a number"),
        ("mean", [0.5, 0.5], "pretrained_cfg.mean is [0.5,0.5], not three numbers"),
        ("mean", [0.5, 0.5, 0.5, 0.5], "not three numbers"), ("std", [0, 1, 1], "std [0.0, 1.0, 1.0] is not three positive numbers"),
        ("input_size", [3, 0, 0], "image size 0 outside"), ("input_size", [3, 64], "not three whole numbers")
    ])
    func aBadDataConfigurationNamesTheFile(key: String, value: Any, reason: String) throws {
        let folder = try folder(key, value)
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect { try CheckpointLoader().loadModel(folder) } throws: { error in
            let text = "\(error)"
            return text.contains(folder.appendingPathComponent("config.json").path) && text.contains(reason)
        }
    }

    /// Inference at a size the memory cannot hold is refused with the estimate and what to change; the sizes
    /// published models use fit.
    @Test func inferenceThatCannotFitIsRefusedBeforeAnythingIsBuilt() throws {
        let gib = 1_073_741_824.0
        var resnet = try ResNet.config(
            tensors: SafetensorsFile(contentsOf: Self.source.appendingPathComponent("model.safetensors")).allTensors(), file: HubConfig())
        resnet.imageSize = 16384
        let huge = MemoryEstimate(architecture: .resnet(resnet), batchSize: 1, purpose: .inference)
        #expect(huge.totalBytes > 60 * gib)
        #expect { try huge.check(available: 24 * gib) } throws: { "\($0)".contains("inference needs") && "\($0)".contains("--image-size") }
        resnet.imageSize = 224
        #expect(throws: Never.self) {
            try MemoryEstimate(architecture: .resnet(resnet), batchSize: 8, purpose: .inference).check(available: 2 * gib)
        }
        // A ViT of 65,536 patches (the most validate allows): attention alone takes 4 x 65,537^2 x heads bytes per block.
        var vit = ViTConfig.cifar
        (vit.imageSize, vit.patchSize) = (1024, 4)
        let long = MemoryEstimate(config: vit, batchSize: 1, purpose: .inference)
        #expect { try long.check(available: 24 * gib) } throws: { "\($0)".contains("65537 tokens") }
        // Every preset at its own size and batch 8 fits in 2 GiB.
        for name in ["vit_small_patch16_224", "vit_base_patch16_224"] {
            #expect(throws: Never.self, "\(name)") {
                try MemoryEstimate(config: try ViTConfig.preset(name), batchSize: 8, purpose: .inference).check(available: 2 * gib)
            }
        }
    }
}
