import CLIP
import Foundation
import Images
import NN
import Tensors
import TestSupport
import Testing
import ViT

@testable import Export

/// `vit export --format onnx`, checked without Python: each exported graph parsed back and run by the interpreter
/// beside this test, against the model's own forward pass, for every variant the exporter knows; and its structure
/// (opset, the symbolic batch axis, every parameter stored once). `scripts/check-onnx.py` checks the same files with
/// ONNX Runtime.
@Suite struct ExportTests {
    static func tiny(_ change: (inout ViTConfig) -> Void = { _ in }) -> ViTConfig {
        var config = ViTConfig()
        (config.imageSize, config.patchSize, config.width, config.depth, config.heads, config.numClasses) = (16, 4, 32, 2, 2, 5)
        change(&config)
        return config
    }

    /// Every parameter redrawn, wide enough that attention is far from uniform (timm zeroes the head; a zero head would
    /// hide a wrong pooling).
    static func randomised<M: Module>(_ model: M, seed: UInt64) -> M {
        var rng = SeededGenerator(seed: seed)
        for (_, parameter) in model.namedParameters() {
            parameter.assign(Tensor.randn(parameter.shape, std: 0.5, using: &rng))
        }
        return model
    }

    static func parse(_ data: Data) throws -> Onnx_ModelProto { try Onnx_ModelProto(serializedBytes: data) }

    static func images(_ count: Int, size: Int, seed: UInt64) -> Tensor {
        var rng = SeededGenerator(seed: seed)
        return Tensor.randn([count, 3, size, size], using: &rng)
    }

    /// float32 rounding apart (1e-7 measured): a 1% change of the attention scale is well past it.
    static let tolerance: Float = 1e-5

    static func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max() ?? .infinity
    }

    static let variants: [(String, ViTConfig)] = [
        ("class token, learned positions", tiny()),
        ("average pooling, fc_norm", tiny { $0.pooling = .avg }),
        ("distilled DeiT", tiny { $0.distillationToken = true }),
        ("distilled, average pooling", tiny { ($0.distillationToken, $0.pooling) = (true, .avg) }),
        ("fixed sin-cos positions", tiny { $0.positionEmbedding = .sincos2d }),
        ("no class token, positions on patches", tiny { ($0.classToken, $0.pooling, $0.noEmbedClass) = (false, .avg, true) }),
        ("pre-logits layer", tiny { $0.representationSize = 24 }),
        ("tanh GELU, no qkv bias", tiny { ($0.exactGELU, $0.qkvBias) = (false, false) }),
        ("headless", tiny { $0.numClasses = 0 })
    ]

    @Test(arguments: variants.indices) func aViTRunsAsItsForwardPass(_ index: Int) throws {
        let (name, config) = Self.variants[index]
        let model = Self.randomised(try VisionTransformer(config), seed: UInt64(index))
        let transform = EvalTransform(size: 16, cropPct: 0.875, filter: .bicubic, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
        let labels = (0..<config.numClasses).map { "class \($0)" }
        let onnx = try Self.parse(try ONNXExport.classifier(model, transform: transform, labels: labels))

        #expect(onnx.opsetImport.map(\.version) == [17])
        let input = onnx.graph.input.first?.type.tensorType.shape.dim
        #expect(input?.first?.dimParam == "batch" && input?.dropFirst().map(\.dimValue) == [3, 16, 16], "\(name)")
        // Every parameter stored once, and nothing else of its size: the float initializers hold the parameters,
        // a fixed sin-cos table where there is one, and scalar constants.
        let stored = onnx.graph.initializer.filter { $0.dataType == 1 && !$0.dims.isEmpty }.map { $0.dims.reduce(1, *) }.reduce(0, +)
        let table = config.positionEmbedding == .sincos2d ? model.positionTable?.count ?? 0 : 0
        #expect(Int(stored) == model.parameterCount + table, "\(name)")
        #expect(Set(onnx.graph.initializer.map(\.name)).count == onnx.graph.initializer.count)
        let metadata = Dictionary(onnx.metadataProps.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(metadata["crop_pct"] == "0.875" && metadata["image_size"] == "16" && metadata["interpolation"] == "bicubic")
        #expect(config.numClasses == 0 || metadata["labels"]?.contains("class 4") == true)

        let images = Self.images(3, size: 16, seed: 9)
        let outputs = try ONNXInterpreter(graph: onnx.graph).run(["image": images])
        let expected = Autograd.withNoGrad { config.numClasses == 0 ? model.forward(images).preLogits : model.forward(images).logits }
        let got = try #require(outputs[config.numClasses == 0 ? "features" : "logits"], "\(name): \(outputs.keys)")
        #expect(got.shape == expected.shape, "\(name)")
        #expect(Self.maxDifference(got, expected) < Self.tolerance, "\(name): \(Self.maxDifference(got, expected))")
    }

    @Test func clipsImageTowerRunsAsEncodeImage() throws {
        for quickGELU in [true, false] {
            var config = CLIPConfig()
            (config.imageSize, config.patchSize, config.visionWidth, config.visionLayers, config.visionHeadWidth) = (16, 4, 32, 2, 16)
            (config.embedDim, config.textWidth, config.textHeads, config.textLayers, config.vocabSize) = (24, 32, 2, 1, 100)
            config.quickGELU = quickGELU
            let model = Self.randomised(CLIPModel(config), seed: 3)
            let onnx = try Self.parse(try ONNXExport.clipImageTower(model))
            let images = Self.images(2, size: 16, seed: 4)
            let got = try #require(try ONNXInterpreter(graph: onnx.graph).run(["image": images])["embedding"])
            let expected = Autograd.withNoGrad { model.encodeImage(images) }
            #expect(got.shape == [2, 24] && Self.maxDifference(got, expected) < Self.tolerance, "quickGELU \(quickGELU)")
        }
    }

    @Test func aHybridIsRefusedWithItsReason() throws {
        var config = Self.tiny { $0.patchSize = 1 }
        var backbone = HybridBackbone(layers: [1, 1])
        (backbone.stemWidth, backbone.baseWidth, backbone.normGroups) = (8, 16, 4)
        config.backbone = backbone
        let hybrid = try VisionTransformer(config)
        let transform = EvalTransform(size: 16, cropPct: 1, filter: .bicubic, mean: [0, 0, 0], std: [1, 1, 1])
        let error = #expect(throws: ExportError.self) { try ONNXExport.classifier(hybrid, transform: transform, labels: []) }
        #expect(error?.description.contains("hybrid") == true)
    }
}
