import Datasets
import Foundation
import Tensors

/// The self-supervised methods `vit pretrain` runs.
public enum PretrainingMethod: String, Codable, Sendable, CaseIterable {
    /// Masked autoencoder: random masks, pixel reconstruction.
    case mae
    /// Hard Patches Mining: MAE plus a loss predictor, an EMA teacher, and masks of predicted-hard patches.
    case hpm
}

/// The recipe of a pre-training run; MAE's (`main_pretrain.py`) unless changed. Saved in every checkpoint.
public struct PretrainingOptions: Codable, Equatable, Sendable {
    public var method = PretrainingMethod.mae
    public var epochs = 100
    public var batchSize = 256
    /// MAE's base rate: the rate is base × batch / 256 unless `learningRate` is set.
    public var baseLearningRate: Float = 1.5e-4
    /// An absolute peak rate, instead of the base rate's scaling.
    public var learningRate: Float?
    public var minLearningRate: Float = 0
    /// Linear warm-up; nil means a tenth of the run, at most 40 epochs (MAE: 40 of 400-1600).
    public var warmupEpochs: Float?
    /// AdamW's decoupled weight decay, on every parameter of rank >= 2 (MAE's `add_weight_decay`: the class and mask
    /// tokens decay too; biases and norms do not).
    public var weightDecay: Float = 0.05
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    /// Random resized crop (scale 0.2-1, bicubic) and horizontal flip, as MAE pre-trains.
    public var augmentation: Augmentation = {
        var a = Augmentation.none
        a.resizedCropScale = [0.2, 1]
        a.horizontalFlip = true
        return a
    }()
    /// Mixed precision (bf16 matrix products with float32 weights), or nil for float32 throughout.
    public var autocast: DType?
    /// Seeds the initialisation, the data order, the augmentation and the masks.
    public var seed: UInt64 = 0

    public init() {}

    /// The peak learning rate in force.
    public var effectiveLearningRate: Float { learningRate ?? baseLearningRate * Float(batchSize) / 256 }
    /// The warm-up in force.
    public var effectiveWarmupEpochs: Float { warmupEpochs ?? min(40, Float(epochs) / 10) }

    public func validate() throws {
        var problems: [String] = []
        if epochs < 1 { problems.append("epochs must be at least 1") }
        if batchSize < 1 { problems.append("batch size must be at least 1") }
        if !(effectiveLearningRate > 0 && effectiveLearningRate.isFinite) { problems.append("learning rate must be positive") }
        if !(minLearningRate >= 0) { problems.append("minimum learning rate must be zero or more") }
        if effectiveWarmupEpochs < 0 || effectiveWarmupEpochs >= Float(epochs) {
            problems.append("a warm-up of \(effectiveWarmupEpochs) epochs must be shorter than the \(epochs) epochs of the run")
        }
        if !(weightDecay >= 0 && weightDecay.isFinite) { problems.append("weight decay must be zero or more") }
        if !(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1) { problems.append("Adam betas must be in [0, 1)") }
        if !problems.isEmpty { throw TrainingError.badOptions(problems.joined(separator: "; ")) }
    }
}

/// One finished pre-training epoch, as written to `metrics.jsonl`.
public struct PretrainingRecord: Codable, Equatable, Sendable {
    public var epoch: Int  // 1-based
    /// Mean reconstruction loss over the epoch's steps.
    public var loss: Double
    /// HPM: mean ranking loss of the loss predictor.
    public var rankingLoss: Double?
    public var learningRate: Double
    public var imagesPerSecond: Double
    public var seconds: Double
    /// The compute precision the epoch ended in, as `EpochRecord`'s.
    public var precision: String?

    enum CodingKeys: String, CodingKey {
        case epoch, loss, seconds, precision
        case rankingLoss = "ranking_loss", learningRate = "lr", imagesPerSecond = "images_per_second"
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = RunCheckpoint.nonFiniteNumbers.encoding
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}

/// Where a pre-training run stands; saved with each checkpoint.
public struct PretrainingState: Codable, Sendable {
    /// Epochs finished, and batches finished of the current one.
    public var epoch = 0
    public var batch = 0
    public var step = 0
    public var lossSum: Double = 0
    public var rankingLossSum: Double = 0
    public var steps = 0
    public var seen = 0
    public var trainingSeconds: Double = 0
    public var history: [PretrainingRecord] = []
    /// The masks' (and drop path's) generator.
    public var random = SeededGenerator(seed: 0)
}
