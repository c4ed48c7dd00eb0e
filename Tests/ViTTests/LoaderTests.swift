import Checkpoints
import Foundation
import NN
import Tensors
import Testing
import TestSupport
@testable import ViT

@Suite struct LoaderTests {

    @Test func convertedFolderLoadsToTheSameModel() throws {
        let original = try CheckpointLoader().load(fixture("jax-vit-p8-d64-h4-l2-i32").appendingPathComponent("model.npz"))
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try NativeFormat.save(original, to: folder)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() == ["config.json", "model.safetensors"])
        let reloaded = try CheckpointLoader().load(folder)
        #expect(reloaded.config == original.config)
        let input = try reference("jax-vit-p8-d64-h4-l2-i32").tensor("input")
        let (a, b) = Autograd.withNoGrad { (original(input), reloaded(input)) }
        expectWithin(a, b, 0, "logits after conversion")
        // timm's reader needs these fields.
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("config.json"))) as! [String: Any]
        #expect(json["architecture"] as? String != nil && json["model_args"] != nil && json["pretrained_cfg"] != nil)
        #expect((json["model_args"] as! [String: Any])["num_heads"] as? Int == 4)
    }

    @Test func everyMismatchIsReportedTogether() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var tensors = try SafetensorsFile(contentsOf: fixture("timm-vit-p8-d64-h4-l2-i32").appendingPathComponent("model.safetensors"))
            .allTensors()
        tensors.removeValue(forKey: "blocks.1.norm2.bias")
        tensors["blocks.0.attn.proj.weight"] = Tensor.zeros([64, 32])
        tensors["something.else"] = Tensor.zeros([3])
        try Safetensors.write(tensors, to: folder.appendingPathComponent("model.safetensors"))
        try FileManager.default.copyItem(
            at: fixture("timm-vit-p8-d64-h4-l2-i32").appendingPathComponent("config.json"),
            to: folder.appendingPathComponent("config.json"))
        #expect {
            try CheckpointLoader().load(folder)
        } throws: { error in
            let text = "\(error)"
            return text.contains("model.safetensors") && text.contains("missing keys: blocks.1.norm2.bias")
                && text.contains("unexpected keys: something.else")
                && text.contains("blocks.0.attn.proj.weight: checkpoint [64, 32], model [64, 64]")
        }
    }

    @Test func configThatContradictsTheWeightsIsRejected() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = fixture("timm-vit-p8-d64-h4-l2-i32")
        try FileManager.default.copyItem(
            at: source.appendingPathComponent("model.safetensors"), to: folder.appendingPathComponent("model.safetensors"))
        var config = String(decoding: try Data(contentsOf: source.appendingPathComponent("config.json")), as: UTF8.self)
        config = config.replacingOccurrences(of: "\"depth\": 2", with: "\"depth\": 3")
        try Data(config.utf8).write(to: folder.appendingPathComponent("config.json"))
        #expect { try CheckpointLoader().load(folder) } throws: { "\($0)".contains("depth is 3 in the configuration but 2 in the weights") }
    }

    @Test func npzWithoutHeadCountAsksForOne() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let npz = folder.appendingPathComponent("model.npz")
        try FileManager.default.copyItem(at: fixture("jax-vit-p8-d64-h4-l2-i32").appendingPathComponent("model.npz"), to: npz)
        #expect { try CheckpointLoader().load(npz) } throws: {
            "\($0)".contains("number of attention heads") && "\($0)".contains("--heads")
        }
        let model = try CheckpointLoader(heads: 4).load(npz)
        #expect(model.config.heads == 4 && model.config.depth == 2 && model.config.numClasses == 10)
    }

    @Test func foldersWithoutWeightsSayWhatWasExpected() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data("{}".utf8).write(to: folder.appendingPathComponent("config.json"))
        #expect { try CheckpointLoader().load(folder) } throws: {
            "\($0)".contains("expected model.safetensors, an .npz or a PyTorch file")
        }
        try Data([1, 2, 3]).write(to: folder.appendingPathComponent("pytorch_model.bin"))
        #expect { try CheckpointLoader().load(folder) } throws: { "\($0)".contains("pytorch_model.bin: is neither a zip nor a pickle") }
        #expect { try CheckpointLoader().load(folder.appendingPathComponent("nothing-here")) } throws: { "\($0)".contains("no such file") }
    }

    @Test func halfPrecisionSafetensorsAreRead() throws {
        // F16 and BF16 encodings of small values, written by hand: 1.0, -2.0, 0.5
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let header = #"{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[6,12]}}"#
        var data = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(Data(header.utf8))
        for bits: UInt16 in [0x3C00, 0xC000, 0x3800, 0x3F80, 0xC000, 0x3F00] {
            withUnsafeBytes(of: bits.littleEndian) { data.append(contentsOf: $0) }
        }
        let url = folder.appendingPathComponent("half.safetensors")
        try data.write(to: url)
        let file = try SafetensorsFile(contentsOf: url)
        #expect(try file.tensor("h").toArray() == [1, -2, 0.5])
        #expect(try file.tensor("b").toArray() == [1, -2, 0.5])
    }
}

@Suite struct HeadlessCheckpointTests {
    /// A Hugging Face `ViTModel` folder: no `vit.` prefix, no classifier, and the default two-entry id2label that
    /// transformers writes into every config. It loads as a feature extractor whose features equal the classifier's.
    @Test func huggingFaceViTModelLoadsWithoutAHead() throws {
        let source = fixture("hf-vit-p8-d64-h4-l2-i32")
        let folder = try temporaryFolder("swiftvit")
        defer { try? FileManager.default.removeItem(at: folder) }
        var tensors: [String: Tensor] = [:]
        let file = try SafetensorsFile(contentsOf: source.appendingPathComponent("model.safetensors"))
        for name in file.names where name.hasPrefix("vit.") { tensors[String(name.dropFirst(4))] = try file.tensor(name) }
        try Safetensors.write(tensors, to: folder.appendingPathComponent("model.safetensors"))
        var config =
            try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as! [String: Any]
        config["architectures"] = ["ViTModel"]
        config["id2label"] = ["0": "LABEL_0", "1": "LABEL_1"]
        config["label2id"] = ["LABEL_0": 0, "LABEL_1": 1]
        try JSONSerialization.data(withJSONObject: config).write(to: folder.appendingPathComponent("config.json"))

        let headless = try CheckpointLoader().load(folder)
        #expect(headless.config.numClasses == 0 && headless.head == nil && headless.config.labels == nil)
        let full = try CheckpointLoader().load(source)
        let input = try reference("hf-vit-p8-d64-h4-l2-i32").tensor("input")
        let (a, b) = Autograd.withNoGrad { (headless.forward(input).preLogits, full.forward(input).preLogits) }
        expectWithin(a, b, 0, "ViTModel features")
    }
}
