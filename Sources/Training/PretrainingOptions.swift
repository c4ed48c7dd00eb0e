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
public struct PretrainingOptions: Recipe {
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
    public var peakLearningRate: Float {
        get { learningRate ?? baseLearningRate * Float(batchSize) / 256 }
        set { learningRate = newValue }
    }
    public static let learningRateDefault = "the base rate x batch size / 256"
    public static let warmupDefault = "a tenth of the run, at most 40 epochs"
    /// The warm-up in force.
    public var effectiveWarmupEpochs: Float { warmupEpochs ?? min(40, Float(epochs) / 10) }

    public var learningRateIsDerived: Bool { learningRate == nil }

    public var ownProblems: [String] {
        adamBetaProblems(beta1, beta2)
            + (baseLearningRate > 0 && baseLearningRate.isFinite
                ? [] : ["{baseLearningRate} must be a positive number, got \(baseLearningRate)"])
    }
}

/// One finished pre-training epoch, as written to `metrics.jsonl`.
public struct PretrainingRecord: TrainingRecord {
    public static let kind = "pretrain"
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

    public var summary: String {
        String(format: "loss %.4f", loss) + (rankingLoss.map { String(format: " ranking %.4f", $0) } ?? "")
    }
}
