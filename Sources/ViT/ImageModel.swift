import Foundation
import NN
import Tensors

/// What every image classifier gives the commands and the trainer: ViTs (plain, DeiT distilled, hybrid) and ResNets
/// conform, so `vit predict`, `eval`, `embed` and `train` need no per-model branches.
public protocol ImageModel: Module {
    /// What the model is built from (saved with its weights and with training runs).
    var architecture: Architecture { get }
    /// Normalised images [B, C, S, S] -> logits [B, classes] (the pooled features when there is no head), float32.
    func callAsFunction(_ images: Tensor) -> Tensor
    /// Normalised images -> logits and the pooled features the head reads [B, F], float32; for a DeiT with a
    /// distillation token, each head's logits too (`logits` is then their mean, as DeiT evaluates).
    func classify(_ images: Tensor) -> Classification
    /// Converts the weights for inference in `dtype`, once, where the model computes in it.
    func convertWeights(to dtype: DType)
    /// Marks the weights read-only for inference (matmuls may pack them).
    func freezeForInference()
}

/// One forward pass of a classifier.
public struct Classification {
    public var logits: Tensor
    public var features: Tensor
    public var classHeadLogits: Tensor?
    public var distillationHeadLogits: Tensor?
    public init(logits: Tensor, features: Tensor, classHeadLogits: Tensor? = nil, distillationHeadLogits: Tensor? = nil) {
        (self.logits, self.features, self.classHeadLogits, self.distillationHeadLogits) =
            (logits, features, classHeadLogits, distillationHeadLogits)
    }
}

/// The architecture of any model SwiftViT builds: what `ImageModel.architecture` returns and training runs save.
public enum Architecture: Codable, Equatable, Sendable {
    case vit(ViTConfig)
    case resnet(ResNetConfig)

    /// A new model of this architecture, initialised as its family initialises.
    public func build() throws -> any ImageModel {
        switch self {
        case .vit(let config): return try VisionTransformer(config)
        case .resnet(let config): return try ResNet(config)
        }
    }

    public var data: DataConfig {
        get {
            switch self {
            case .vit(let c): return c.data
            case .resnet(let c): return c.data
            }
        }
        set {
            switch self {
            case .vit(var c): c.data = newValue; self = .vit(c)
            case .resnet(var c): c.data = newValue; self = .resnet(c)
            }
        }
    }

    /// Whether the model has convolutions (a ResNet, or a hybrid ViT's backbone), which compute in float32 whatever
    /// the precision of the matrix products.
    public var hasConvolutions: Bool {
        switch self {
        case .vit(let c): return c.backbone != nil
        case .resnet: return true
        }
    }

    public var imageSize: Int {
        switch self {
        case .vit(let c): return c.imageSize
        case .resnet(let c): return c.imageSize
        }
    }

    public var numClasses: Int {
        switch self {
        case .vit(let c): return c.numClasses
        case .resnet(let c): return c.numClasses
        }
    }

    public var labels: [String]? {
        get {
            switch self {
            case .vit(let c): return c.labels
            case .resnet(let c): return c.labels
            }
        }
        set {
            switch self {
            case .vit(var c): c.labels = newValue; self = .vit(c)
            case .resnet(var c): c.labels = newValue; self = .resnet(c)
            }
        }
    }

    /// The ViT configuration, for what only a ViT has (attention, tokens, layer decay by block).
    public var vit: ViTConfig? {
        if case .vit(let c) = self { return c }
        return nil
    }

    /// A short description for logs.
    public var summary: String {
        switch self {
        case .vit(let c):
            return "ViT \(c.width)-wide, \(c.depth) blocks" + (c.backbone.map { ", on a ResNetV2 \($0.layers)" } ?? "")
        case .resnet(let c): return "ResNet (\(c.block.rawValue) blocks \(c.layers), widths \(c.channels))"
        }
    }
}

extension VisionTransformer: ImageModel {
    public var architecture: Architecture { .vit(config) }

    public func classify(_ images: Tensor) -> Classification {
        let outputs = forward(images)
        return Classification(
            logits: outputs.logits, features: outputs.preLogits, classHeadLogits: outputs.classHeadLogits,
            distillationHeadLogits: outputs.distillationHeadLogits)
    }
}

extension ResNet: ImageModel {
    public var architecture: Architecture { .resnet(config) }

    public func classify(_ images: Tensor) -> Classification {
        let (logits, features) = forward(images)
        return Classification(logits: logits, features: features)
    }

    /// ResNets compute in float32 (the convolutions have no bf16 path here), so their weights stay float32.
    public func convertWeights(to dtype: DType) {}

    /// The classifier's matrix and every convolution kernel are packed once into their primitives' layouts.
    public func freezeForInference() {
        for (_, parameter) in namedParameters() where parameter.rank == 2 || parameter.rank == 4 {
            parameter.freezeForInference()
        }
    }
}
