import Foundation
import Images
import NN
import Tensors
import ViT

/// One class and its probability.
public struct Prediction: Sendable, Equatable {
    public let index: Int
    public let label: String
    public let probability: Float
}

/// Preprocessing settings that replace the checkpoint's data config where given.
public struct PreprocessingOverrides: Sendable {
    public var cropPct: Float?
    public var interpolation: Resampling.Filter?
    public var mean: [Float]?
    public var std: [Float]?
    public init(cropPct: Float? = nil, interpolation: Resampling.Filter? = nil, mean: [Float]? = nil, std: [Float]? = nil) {
        self.cropPct = cropPct
        self.interpolation = interpolation
        self.mean = mean
        self.std = std
    }
}

/// Load a checkpoint once, classify many images:
///
///     let classifier = try Classifier(checkpoint: URL(fileURLWithPath: "vit-b16"))
///     for prediction in try classifier.classify(URL(fileURLWithPath: "cat.jpg"), top: 3) {
///         print(prediction.label, prediction.probability)
///     }
public final class Classifier {
    public let model: any ImageModel
    /// The model as a ViT, for what only a ViT has (attention maps, tokens); nil for a convnet.
    public var vit: VisionTransformer? { model as? VisionTransformer }
    /// timm's evaluation transform with the checkpoint's data config (and any overrides).
    public let transform: EvalTransform
    /// One name per class: the checkpoint's, else ImageNet's for 1000 classes, else the index.
    public let labels: [String]

    /// `precision` other than float32 converts the model's weights once: bf16 to bfloat16 (`ImageModel.convertWeights`),
    /// int8 the linear layers' to int8 (`Module.quantizeLinearWeights`).
    public init(model: any ImageModel, overrides: PreprocessingOverrides = .init(), precision: Precision = .fp32) {
        self.model = model
        model.eval()
        model.convertWeights(to: precision.dtype)
        model.freezeForInference()
        if precision.quantizesLinearLayers { model.quantizeLinearWeights() }
        let data = model.architecture.data
        transform = EvalTransform(
            size: model.architecture.imageSize,
            cropPct: overrides.cropPct ?? data.cropPct,
            filter: overrides.interpolation ?? (data.interpolation == .bilinear ? .bilinear : .bicubic),
            mean: overrides.mean ?? data.mean,
            std: overrides.std ?? data.std)
        let classes = model.architecture.numClasses
        if let own = model.architecture.labels, own.count == classes {
            labels = own
        } else if classes == 1000 {
            labels = ImageNetClasses.names
        } else {
            labels = (0..<classes).map(String.init)
        }
    }

    /// Loads any checkpoint `CheckpointLoader` reads.
    public convenience init(
        checkpoint: URL, loader: CheckpointLoader = CheckpointLoader(),
        overrides: PreprocessingOverrides = .init(), precision: Precision = .fp32
    ) throws {
        var loader = loader
        loader.weightDType = precision.dtype  // converted as read: no float32 copy of the weights is ever whole
        self.init(model: try loader.loadModel(checkpoint), overrides: overrides, precision: precision)
    }

    /// Normalised images [B, 3, S, S] -> logits [B, classes].
    public func logits(_ batch: Tensor) -> Tensor {
        Autograd.withNoGrad { model(batch) }
    }

    /// The top `k` classes of each row of logits, most probable first.
    public func top(_ logits: Tensor, k: Int) -> [[Prediction]] {
        let probabilities = Autograd.withNoGrad { logits.softmax() }
        let classes = logits.shape[1], values = probabilities.toArray()
        return (0..<logits.shape[0]).map { row in
            let slice = values[(row * classes)..<((row + 1) * classes)]
            return slice.indices.sorted { slice[$0] > slice[$1] }.prefix(max(1, min(k, classes))).map { i in
                Prediction(index: i - row * classes, label: labels[i - row * classes], probability: slice[i])
            }
        }
    }

    /// Preprocessed images stacked into a batch [B, 3, S, S].
    public func batch(_ images: [RGBImage]) -> Tensor {
        Tensor.stack(images.map { transform($0) })
    }

    public func classify(_ images: [RGBImage], top k: Int = 5) -> [[Prediction]] {
        top(logits(batch(images)), k: k)
    }

    public func classify(_ file: URL, top k: Int = 5) throws -> [Prediction] {
        classify([try RGBImage(contentsOf: file)], top: k)[0]
    }
}
