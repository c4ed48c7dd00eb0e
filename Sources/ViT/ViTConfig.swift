import Foundation
import Tensors

/// Everything that defines a Vision Transformer's architecture, plus the preprocessing its weights expect.
/// Field names follow timm's `VisionTransformer` arguments where one exists.
public struct ViTConfig: Codable, Equatable, Sendable {
    public enum Pooling: String, Codable, Sendable {
        /// The class token's final state (timm `global_pool='token'`).
        case token
        /// The mean of the patch tokens, followed by `fc_norm` (timm `global_pool='avg'`).
        case avg
    }

    public enum PositionEmbedding: String, Codable, Sendable {
        /// Learned, one vector per token (timm's `pos_embed` parameter).
        case learned
        /// Fixed 2-D sine-cosine (MAE, big_vision `sincos2d`): not a parameter.
        case sincos2d
        case none
    }

    public var imageSize: Int = 224
    public var patchSize: Int = 16
    public var channels: Int = 3
    /// Token width (timm `embed_dim`, HF `hidden_size`).
    public var width: Int = 768
    public var depth: Int = 12
    public var heads: Int = 12
    public var mlpRatio: Float = 4
    public var qkvBias = true
    public var classToken = true
    /// DeiT's distillation token and second head.
    public var distillationToken = false
    public var pooling: Pooling = .token
    /// Whether the final LayerNorm runs after pooling (timm `fc_norm`); nil means timm's default, after pooling
    /// exactly when pooling is `avg`. big_vision's average-pooled models normalise all tokens first (false).
    public var fcNorm: Bool?
    public var positionEmbedding: PositionEmbedding = .learned
    /// True when position embeddings cover only the patches and the class/distillation tokens get none
    /// (timm `no_embed_class`, big_vision checkpoints).
    public var noEmbedClass = false
    public var layerNormEps: Float = 1e-6
    public var dropout: Float = 0
    public var attentionDropout: Float = 0
    public var dropPath: Float = 0
    /// 0 for a headless feature extractor.
    public var numClasses: Int = 1000
    /// Width of the optional pre-logits layer (Linear + tanh) of the original ViT (timm `representation_size`).
    public var representationSize: Int?
    /// Exact (erf) GELU, as timm and HF run the published weights; false for the tanh approximation.
    public var exactGELU = true
    /// Preprocessing that goes with the weights.
    public var data = DataConfig()
    /// Class names, index order.
    public var labels: [String]?
    /// A hybrid ViT's ResNet (ViT paper, Section 3.1): its last feature map, cut into `patchSize` patches (1 in the
    /// published hybrids), is the token sequence; nil for a plain ViT.
    public var backbone: HybridBackbone?

    public init() {}

    /// Input pixels per patch side: the patch size, times the backbone's stride in a hybrid.
    public var pixelsPerPatch: Int { patchSize * (backbone?.stride ?? 1) }
    /// Patches per side.
    public var gridSize: Int { imageSize / pixelsPerPatch }
    public var patchCount: Int { gridSize * gridSize }
    /// Class and distillation tokens in front of the patches.
    public var prefixTokens: Int { (classToken ? 1 : 0) + (distillationToken ? 1 : 0) }
    public var tokenCount: Int { patchCount + prefixTokens }
    public var mlpHiddenSize: Int { Int(Float(width) * mlpRatio) }
    /// Whether the final LayerNorm runs after pooling (timm `fc_norm`) rather than on all tokens (`norm`).
    public var usesFCNorm: Bool { fcNorm ?? (pooling == .avg) }

    /// Checks the numbers fit together and lie in their ranges (they come from files and command lines: no value may
    /// reach an allocation, a division or an index unchecked); the message names every field that does not.
    public func validate() throws {
        var checks = FieldChecks()
        // Plain names in the braces: the message reads as the field, "image size 0 is outside 1...16384".
        func fail() throws { if !checks.isEmpty { throw ConfigError(FieldProblem(checks.problems).description) } }
        checks.within("image size", imageSize, 1...16384)
        checks.within("patch size", patchSize, 1...16384)
        checks.within("channels", channels, 1...64)
        checks.within("width", width, 1...65536)
        checks.within("depth", depth, 0...1024)
        checks.within("heads", heads, 1...4096)
        checks.within("class count", numClasses, 0...10_000_000)
        checks.require(mlpRatio > 0 && mlpRatio <= 64, "mlp ratio \(mlpRatio) is outside (0, 64]")
        if let representationSize { checks.within("representation size", representationSize, 1...65536) }
        checks.require(layerNormEps > 0 && layerNormEps < 1, "layer-norm eps \(layerNormEps) is outside (0, 1)")
        for (name, rate) in [("dropout", dropout), ("attention dropout", attentionDropout), ("drop path", dropPath)] {
            checks.require(rate >= 0 && rate < 1, "\(name) rate \(rate) is outside [0, 1)")
        }
        for problem in data.problems(imageSize: imageSize) { checks.require(false, problem) }
        try fail()
        if let backbone { try backbone.validate() }
        checks.require(
            imageSize % pixelsPerPatch == 0,
            "image size \(imageSize) is not a multiple of patch size \(patchSize)"
                + (backbone.map { " x the backbone's stride \($0.stride)" } ?? ""))
        if imageSize % pixelsPerPatch == 0 { checks.within("patches per image", patchCount, 1...65536) }
        checks.require(heads > 0 && width % heads == 0, "width \(width) is not divisible by \(heads) heads")
        checks.require(depth >= 0, "depth \(depth) is negative")
        checks.require(pooling != .token || classToken, "token pooling needs a class token")
        checks.require(!distillationToken || classToken, "a distillation token needs a class token")
        if let labels, numClasses > 0 { checks.require(labels.count == numClasses, "\(labels.count) labels for \(numClasses) classes") }
        try fail()
    }
}

/// What the weights expect of an image (timm's `pretrained_cfg` data fields).
public struct DataConfig: Codable, Equatable, Sendable {
    /// timm's `pretrained_cfg` data fields (input_size, mean, std, crop_pct, interpolation) over these, as a ViT's and
    /// a ResNet's config.json give them; a field present but malformed is an error naming it and `url`.
    public mutating func read(pretrainedConfig cfg: HubConfig.Section, in url: URL) throws {
        if let v = try ConfigFiles.inputSize(cfg["input_size"], "pretrained_cfg.input_size", url) { inputSize = v }
        if let v = try ConfigFiles.triple(cfg["mean"], "pretrained_cfg.mean", url) { mean = v }
        if let v = try ConfigFiles.triple(cfg["std"], "pretrained_cfg.std", url) { std = v }
        if let raw = cfg["crop_pct"] {
            guard let v = raw.float else { throw ConfigError(url, "pretrained_cfg.crop_pct is \(raw), not a number") }
            cropPct = v
        }
        if let v = cfg["interpolation"]?.string, let i = Interpolation(rawValue: v) { interpolation = i }
    }

    /// What is wrong with these fields for a model of `imageSize` px, in timm's names (a ViT's and a ResNet's
    /// `validate` both report them). Images are normalised as RGB: three means and three deviations.
    public func problems(imageSize: Int) -> [String] {
        var problems: [String] = []
        if !(cropPct > 0 && cropPct <= 1) { problems.append("crop_pct \(cropPct) is outside (0, 1]") }
        // The resize before the crop (size / crop_pct) stays a size a resampler can index.
        if cropPct > 0, Float(imageSize) / cropPct > Float(1 << 20) {
            problems.append("crop_pct \(cropPct) resizes to \(Float(imageSize) / cropPct) px before the crop")
        }
        if mean.count != 3 || !mean.allSatisfy(\.isFinite) { problems.append("mean \(mean) is not three finite numbers") }
        if std.count != 3 || !std.allSatisfy({ $0.isFinite && $0 > 0 }) { problems.append("std \(std) is not three positive numbers") }
        return problems
    }

    public enum Interpolation: String, Codable, Sendable { case bicubic, bilinear }

    /// [channels, height, width]
    public var inputSize: [Int] = [3, 224, 224]
    public var mean: [Float] = [0.5, 0.5, 0.5]
    public var std: [Float] = [0.5, 0.5, 0.5]
    /// Resize the shorter side to size / cropPct, then center-crop to size.
    public var cropPct: Float = 0.9
    public var interpolation: Interpolation = .bicubic

    public init() {}

    public static let imagenetMean: [Float] = [0.485, 0.456, 0.406]
    public static let imagenetStd: [Float] = [0.229, 0.224, 0.225]
}

public struct ConfigError: Error, CustomStringConvertible {
    /// The configuration file at fault, when the error knows it.
    public let file: URL?
    public let problem: String
    public var description: String { file.map { "\($0.path): \(problem)" } ?? problem }
    public init(_ problem: String) { (file, self.problem) = (nil, problem) }
    public init(_ file: URL, _ problem: String) { (self.file, self.problem) = (file, problem) }
}
