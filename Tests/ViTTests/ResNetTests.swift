import Checkpoints
import Foundation
import NN
import Tensors
import TestSupport
import Testing
@testable import ViT

/// timm's ResNet against the fixture (`../shared/fixtures/timm-resnet-basic1111-w16-i32`): evaluation logits with the
/// running statistics; one training-mode forward's logits, loss, every gradient and the updated running statistics.
@Suite struct ResNetTests {
    static let folder = "timm-resnet-basic1111-w16-i32"

    func load() throws -> ResNet {
        let url = fixture(Self.folder)
        let tensors = try SafetensorsFile(contentsOf: url.appendingPathComponent("model.safetensors")).allTensors(matrices: .float32)
        return try ResNet.load(tensors: tensors, file: try HubConfig.read(url.appendingPathComponent("config.json")))
    }

    @Test func evaluationLogitsMatchTimm() throws {
        let model = try load()
        #expect(model.config.block == .basic && model.config.layers == [1, 1, 1, 1] && model.config.stemWidth == 64)
        let ref = try reference(Self.folder)
        let logits = Autograd.withNoGrad { model(try! ref.tensor("input")) }
        expectWithin(logits, try ref.tensor("eval_logits"), 1e-4, "eval logits")
    }

    /// A training script's `torch.save` of the same weights (`{'model': {'module.<name>': ...}}`, `pth-resnet-*`) loads
    /// through `loadModel` as the same ResNet: the names come from the pickle alone before the tensors are read once.
    @Test func pyTorchTrainingCheckpointLoads() throws {
        let file = fixture("pth-resnet-basic1111-w16-i32").appendingPathComponent("checkpoint.pth")
        #expect(try PyTorchCheckpoint.tensorNames(file).contains("layer1.0.conv1.weight"))
        let loaded = try #require(try CheckpointLoader().loadModel(file) as? ResNet)
        let ref = try reference(Self.folder)
        let logits = Autograd.withNoGrad { loaded(try! ref.tensor("input")) }
        expectWithin(logits, try ref.tensor("eval_logits"), 1e-4, "eval logits from the .pth")
    }

    @Test func trainingStepMatchesTimm() throws {
        let model = try load()
        model.train()
        let ref = try reference(Self.folder)
        let logits = model(try ref.tensor("input"))
        expectWithin(logits, try ref.tensor("train_logits"), 1e-4, "train logits")
        let loss = logits.crossEntropy(targets: try ref.integers("labels"))
        expectWithin(loss.reshape([1]), try ref.tensor("train_loss"), 1e-4, "train loss")
        loss.backward()
        expectGradients(of: model, match: ref, "ResNet")
        let state = model.stateDict()
        var statistics = 0
        for name in ref.names where name.hasPrefix("after_train_step.") {
            let key = String(name.dropFirst("after_train_step.".count))
            expectWithin(state[key]!, try ref.tensor(name), 1e-4, key)
            statistics += 1
        }
        #expect(statistics == 26)
    }
}

/// timm's hybrid ViT (a ResNetV2's feature map as the patches) against its fixture: the backbone's features, the
/// logits, the loss and every parameter's gradient.
@Suite struct HybridViTTests {
    static let folder = "timm-vit-hybrid-r11-d64-l2-i32"

    @Test func hybridMatchesTimm() throws {
        let model = try CheckpointLoader().load(fixture(Self.folder))
        #expect(model.config.backbone?.layers == [1, 1] && model.config.gridSize == 4 && model.config.channels == 3)
        let ref = try reference(Self.folder)
        let input = try ref.tensor("input")
        let features = Autograd.withNoGrad { model.patchEmbed.backbone!(input) }
        expectWithin(features, try ref.tensor("backbone_features"), 1e-4, "backbone features")
        model.train()
        let logits = model(input)
        expectWithin(logits, try ref.tensor("logits"), 1e-4, "logits")
        let loss = logits.crossEntropy(targets: try ref.integers("labels"))
        expectWithin(loss.reshape([1]), try ref.tensor("loss"), 1e-4, "loss")
        loss.backward()
        expectGradients(of: model, match: ref, "hybrid")
    }

    /// The original JAX R50+ViT npz layout (`conv_root`, `gn_root`, `block<s>/unit<b>/...`, HWIO kernels): the
    /// fixture's npz (written from the timm fixture and read back exactly by timm's own `_load_weights`) loads to
    /// the timm fixture's tensors, with the JAX StdConv's standardisation (eps 1e-5 on the standard deviation), and
    /// gives the logits of timm's model with that standardisation.
    @Test func jaxNpzLayoutLoads() throws {
        let jaxFolder = fixture("jax-vit-hybrid-r11-d64-l2-i32")
        let model = try CheckpointLoader(heads: 4).load(jaxFolder.appendingPathComponent("R11-ViT.npz"))
        let backbone = try #require(model.config.backbone)
        #expect(backbone.layers == [1, 1] && backbone.convEps == 1e-5 && backbone.convEpsOnStandardDeviation == true)
        let timm = try CheckpointLoader().load(fixture(Self.folder))
        let own = Dictionary(uniqueKeysWithValues: model.namedParameters())
        for (name, tensor) in timm.namedParameters() {
            #expect(own[name]?.toArray() == tensor.toArray(), "\(name) differs from timm's")
        }
        let ref = try SafetensorsFile(contentsOf: jaxFolder.appendingPathComponent("reference.safetensors"))
        let logits = Autograd.withNoGrad { model(try! ref.tensor("input")) }
        expectWithin(logits, try ref.tensor("logits_jax"), 1e-4, "logits with JAX's standardisation")
    }

    /// The native folder keeps the backbone in config.json and loads back to the same logits.
    @Test func nativeFolderRoundTrip() throws {
        let model = try CheckpointLoader().load(fixture(Self.folder))
        let folder = try temporaryFolder("hybrid")
        defer { try? FileManager.default.removeItem(at: folder) }
        try NativeFormat.save(model, to: folder)
        let again = try CheckpointLoader().load(folder)
        #expect(again.config.backbone == model.config.backbone)
        let input = try reference(Self.folder).tensor("input")
        let (a, b) = Autograd.withNoGrad { (model(input), again(input)) }
        expectWithin(a, b, 0, "logits after a round trip")
    }
}
