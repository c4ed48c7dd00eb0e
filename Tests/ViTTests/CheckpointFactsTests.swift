import Checkpoints
import Foundation
import NN
import Tensors
import Testing
import TestSupport
@testable import ViT

/// What a checkpoint does not say about itself: the loader takes it from timm's conventions where they are certain
/// and refuses otherwise; what we write says everything timm needs to rebuild the model.
@Suite struct CheckpointFactsTests {

    /// A small model of a standard width with random weights (one block, patch 16 at 32 px keeps it fast).
    func standardModel(width: Int, seed: UInt64) throws -> VisionTransformer {
        var config = ViTConfig()
        config.width = width
        config.heads = ViTConfig.standardHeads[width]!
        config.depth = 1
        config.patchSize = 16
        config.imageSize = 32
        config.numClasses = 5
        return try GlobalRandom.using(RandomStream(SeededGenerator(seed: seed))) { try VisionTransformer(config) }
    }

    @Test(arguments: [192, 384, 768, 1024, 1280])
    func headlessTimmWeightsOfAStandardWidthGetTimmsHeadCount(width: Int) throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let original = try standardModel(width: width, seed: UInt64(width))
        try Safetensors.write(original.stateDict(), to: folder.appendingPathComponent("model.safetensors"))  // no config.json
        let loaded = try CheckpointLoader().load(folder.appendingPathComponent("model.safetensors"))
        #expect(loaded.config.heads == [192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16][width])
        #expect(loaded.config.width == width && loaded.config.depth == 1 && loaded.config.numClasses == 5)
        var rng = SeededGenerator(seed: 3)
        let input = Tensor.randn([2, 3, 32, 32], using: &rng)
        let (a, b) = Autograd.withNoGrad { (original(input), loaded(input)) }
        expectWithin(a, b, 0, "logits of the headless checkpoint at width \(width)")
    }

    @Test func aNonStandardWidthWithoutAConfigIsRefusedNamingTheOption() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let weights = folder.appendingPathComponent("model.safetensors")
        try FileManager.default.copyItem(at: fixture("timm-vit-p8-d64-h4-l2-i32").appendingPathComponent("model.safetensors"), to: weights)
        #expect { try CheckpointLoader().load(weights) } throws: { "\($0)".contains("--heads") && "\($0)".contains("width 64") }
        #expect(try CheckpointLoader(heads: 4).load(weights).config.heads == 4)
        // A head count that contradicts the checkpoint's own config is refused, not silently used.
        #expect { try CheckpointLoader(heads: 12).load(fixture("timm-vit-p8-d64-h4-l2-i32")) } throws: { "\($0)".contains("contradicts") }
    }

    @Test func aRunFolderWithoutAModelPointsAtConvert() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data([0]).write(to: folder.appendingPathComponent("checkpoint.safetensors"))
        #expect { try CheckpointLoader().load(folder) } throws: { "\($0)".contains("vit convert") && "\($0)".contains("--weights raw") }
    }

    /// timm's hub loader: `create_model(architecture, **model_args)`: the registered model's defaults, with
    /// every model_args key applied over them. Our `config.json` must name a registered model and rebuild our shape.
    func rebuiltAsTimmWould(_ json: [String: Any]) throws -> ViTConfig {
        let architecture = try #require(json["architecture"] as? String)
        #expect(ConfigFiles.timmRegistered.contains(architecture), "\(architecture) is not a model timm registers")
        var config = try ViTConfig.preset(architecture)
        let args = try #require(json["model_args"] as? [String: Any])
        let known: Set<String> = [
            "img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias",
            "class_token", "global_pool", "no_embed_class", "num_classes", "fc_norm", "pos_embed", "representation_size"
        ]
        #expect(
            Set(args.keys).isSubset(of: known),
            "model_args keys timm's VisionTransformer does not take: \(Set(args.keys).subtracting(known))")
        config.imageSize = args["img_size"] as! Int
        config.patchSize = args["patch_size"] as! Int
        config.width = args["embed_dim"] as! Int
        config.depth = args["depth"] as! Int
        config.heads = args["num_heads"] as! Int
        config.mlpRatio = (args["mlp_ratio"] as! NSNumber).floatValue
        config.numClasses = args["num_classes"] as! Int
        config.classToken = args["class_token"] as! Bool
        config.pooling = ViTConfig.Pooling(rawValue: args["global_pool"] as! String)!
        return config
    }

    @Test func everyConfigWeWriteNamesATimmArchitectureThatRebuildsTheModel() throws {
        var cifar = ViTConfig.cifar
        cifar.labels = (0..<10).map { "class \($0)" }
        var custom = ViTConfig()
        (custom.width, custom.depth, custom.heads, custom.patchSize, custom.imageSize, custom.numClasses) = (96, 3, 2, 8, 48, 7)
        let presets = try ["vit_tiny_patch16_224", "deit_small_distilled_patch16_224", "vit_base_patch8_224", "vit_huge_patch14_224"].map(
            ViTConfig.preset)
        for config in [cifar, custom] + presets {
            let json = try JSONSerialization.jsonObject(with: ConfigFiles.timmJSON(config)) as! [String: Any]
            let rebuilt = try rebuiltAsTimmWould(json)
            #expect(rebuilt.width == config.width && rebuilt.depth == config.depth && rebuilt.heads == config.heads)
            #expect(rebuilt.patchSize == config.patchSize && rebuilt.imageSize == config.imageSize && rebuilt.mlpRatio == config.mlpRatio)
            #expect(rebuilt.numClasses == config.numClasses && rebuilt.distillationToken == config.distillationToken)
        }
        #expect(ConfigFiles.nearestTimmArchitecture(cifar) == "vit_tiny_patch16_224")
        #expect(
            ConfigFiles.nearestTimmArchitecture(try ViTConfig.preset("deit_small_distilled_patch16_224"))
                == "deit_small_distilled_patch16_224")
        // A name of ours that timm does not register is never written.
        let named =
            try JSONSerialization.jsonObject(with: ConfigFiles.timmJSON(cifar, architecture: "vit_cifar_patch4_32")) as! [String: Any]
        #expect(named["architecture"] as? String == "vit_tiny_patch16_224")
    }

    @Test func theBuiltInModelsConfigNamesATimmArchitecture() throws {
        // Sources/vit/Resources/cifar10-vit, as shipped.
        let url = Fixtures.repository.appendingPathComponent("Sources/vit/Resources/cifar10-vit/config.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let rebuilt = try rebuiltAsTimmWould(json)
        #expect(rebuilt.width == 192 && rebuilt.depth == 9 && rebuilt.heads == 3 && rebuilt.patchSize == 4 && rebuilt.imageSize == 32)
    }

    /// config.json is one typed value for ViTs and ResNets: read and written again, a file keeps the keys this project
    /// does not know (top level and inside model_args and pretrained_cfg), their values and their kinds of number.
    @Test func configFilesKeepUnknownKeysOnARoundTrip() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("config.json")
        var written = try ConfigFiles.timmConfig(try ViTConfig.preset("vit_cifar_patch4_32"))
        written["hf_hub_id"] = .string("timm/vit_tiny_patch16_224.augreg_in21k")
        var args = written.modelArgs
        args["act_layer"] = .string("gelu_tanh")
        args["dynamic_img_size"] = .bool(true)
        written.modelArgs = args
        var cfg = written.pretrainedConfig
        cfg["tag"] = .object(["license": .string("apache-2.0"), "test_input_size": JSONValue([3, 256, 256]), "ratio": .double(0.875)])
        written.pretrainedConfig = cfg
        try written.data().write(to: url)

        let read = try HubConfig.read(url)
        #expect(read == written)
        #expect(try read.data() == written.data())
        #expect(read.modelArgs["act_layer"]?.string == "gelu_tanh" && read.pretrainedConfig["tag"]?.object?["ratio"]?.double == 0.875)
        #expect(read["hf_hub_id"]?.string == "timm/vit_tiny_patch16_224.augreg_in21k")
        // The reader takes the shape from it as before, and ignores what it does not know.
        let (config, stated) = try ConfigFiles.read(url)
        #expect(config.width == 192 && config.depth == 9 && config.patchSize == 4 && stated.contains("width"))

        // A ResNet's config.json is the same type.
        let resnet = folder.appendingPathComponent("resnet")
        var resnetConfig = ResNetConfig()
        (resnetConfig.layers, resnetConfig.channels, resnetConfig.stemWidth, resnetConfig.numClasses) = (
            [1, 1, 1, 1], [8, 16, 32, 64], 8, 3
        )
        let model = try ResNet(resnetConfig)
        try ResNet.save(model.stateDict(), config: resnetConfig, to: resnet)
        let resnetFile = try HubConfig.read(resnet.appendingPathComponent("config.json"))
        #expect(resnetFile.modelArgs["layers"] == JSONValue([1, 1, 1, 1]) && resnetFile.pretrainedConfig["first_conv"]?.string == "conv1")
        #expect(try ResNet.config(tensors: model.stateDict(), file: resnetFile).channels == [8, 16, 32, 64])

        // What is not a JSON object is one error naming the file.
        try Data("[1, 2]".utf8).write(to: url)
        #expect { try HubConfig.read(url) } throws: { "\($0)".contains(url.path) && "\($0)".contains("not a JSON object") }
        try Data("{\"a\": ".utf8).write(to: url)
        #expect { try HubConfig.read(url) } throws: { "\($0)".contains(url.path) && "\($0)".contains("cannot be read as JSON") }
    }
}
