import Datasets
import Foundation
import Tensors
import ViT

/// The recipe of a training run (what `vit train`'s options set). Saved in every checkpoint, so a resumed run
/// continues with the same recipe.
public struct TrainingOptions: Recipe {
    public var epochs = 30
    public var batchSize = 128
    /// Peak learning rate, reached at the end of the warm-up; cosine decay to `minLearningRate` after it.
    public var learningRate: Float = 1e-3
    public var minLearningRate: Float = 1e-5
    /// Linear warm-up from 0 to the peak learning rate; nil means 3 epochs or a tenth of the run, whichever is shorter.
    public var warmupEpochs: Float?
    /// AdamW's decoupled weight decay, on weights of rank >= 2 only (`ParameterGroup.standard`).
    public var weightDecay: Float = 0.05
    public var labelSmoothing: Float = 0.1
    /// Largest global gradient L2 norm; 0 turns clipping off.
    public var gradientClip: Float = 0
    /// Decay of an exponential moving average of the weights (timm `ModelEmaV2`, e.g. 0.999); nil turns it off.
    /// The decay at step t is min(decay, (1 + t) / (10 + t)). With EMA on, evaluation and the saved model use the
    /// averaged weights.
    public var emaDecay: Float?
    public var augmentation = Augmentation()
    public var mixing = BatchMixing()
    /// AdamW (nil) or SGD with momentum, the ViT paper's fine-tuning optimiser.
    public var optimizer: OptimizerKind?
    /// SGD's momentum (nil: 0.9).
    public var momentum: Float?
    /// Layer-wise learning-rate decay (MAE / BEiT fine-tuning, e.g. 0.75): block k's rate is scaled by
    /// decay^(depth - k), the patch embedding's by decay^(depth + 1); nil or 1 turns it off.
    public var layerDecay: Float?
    /// Gradient accumulation: one optimiser step per this many batches of `batchSize` (the loss of each scaled by
    /// 1/N), for an effective batch larger than memory allows; nil or 1 steps every batch.
    public var accumulate: Int?
    /// Train the head only (a linear probe of the features); nil or false trains everything.
    public var headOnly: Bool?
    /// DeiT: the distillation head learns from `teacher` (a checkpoint path, loaded again on resume); nil trains
    /// without a teacher.
    public var distillation: Distillation?
    public var teacher: String?
    /// Mixed precision: the dtype matrix products run in (`Autocast`, bf16), with float32 master weights, gradients
    /// and optimiser state; nil trains in float32 throughout.
    public var autocast: DType?
    /// Seeds the initialisation, the data order, the augmentation, dropout and drop path.
    public var seed: UInt64 = 0

    public init() {}

    /// The warm-up in force: the one given, else min(3, epochs / 10).
    public var effectiveWarmupEpochs: Float { warmupEpochs ?? min(3, Float(epochs) / 10) }

    public var peakLearningRate: Float {
        get { learningRate }
        set { learningRate = newValue }
    }
    public static let warmupDefault = "3 epochs, or a tenth of the run when that is shorter"

    public var ownProblems: [String] {
        var problems: [String] = []
        func check(_ ok: Bool, _ problem: @autoclosure () -> String) { if !ok { problems.append(problem()) } }
        check(labelSmoothing >= 0 && labelSmoothing < 1, "{labelSmoothing} must be in [0, 1), got \(labelSmoothing)")
        check(gradientClip >= 0 && gradientClip.isFinite, "{gradientClip} must be zero (off) or more, got \(gradientClip)")
        if let emaDecay { check(emaDecay > 0 && emaDecay < 1, "{emaDecay} must be in (0, 1), got \(emaDecay)") }
        if let layerDecay { check(layerDecay > 0 && layerDecay <= 1, "{layerDecay} must be in (0, 1], got \(layerDecay)") }
        if let momentum { check(momentum >= 0 && momentum < 1, "{momentum} must be in [0, 1), got \(momentum)") }
        if let accumulate { check(accumulate >= 1, "{accumulate} must be at least 1 batch, got \(accumulate)") }
        check(
            mixing.mixupAlpha >= 0 && mixing.mixupAlpha.isFinite && mixing.cutmixAlpha >= 0 && mixing.cutmixAlpha.isFinite,
            "{mixing.mixupAlpha} and {mixing.cutmixAlpha} must be zero (off) or more, got \(mixing.mixupAlpha) and \(mixing.cutmixAlpha)")
        if let distillation {
            check(
                distillation.alpha >= 0 && distillation.alpha <= 1, "{distillation.alpha} must be in [0, 1], got \(distillation.alpha)")
            check(distillation.tau > 0 && distillation.tau.isFinite, "{distillation.tau} must be positive, got \(distillation.tau)")
            check(teacher != nil, "distillation needs a {teacher}")
        }
        return problems
    }

    public var batchesPerUpdate: Int { accumulate ?? 1 }
}

/// The optimisers `vit train` offers.
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    case adamw, sgd
}

/// One finished epoch, as written to `metrics.jsonl` and drawn in `curves.png`.
public struct EpochRecord: TrainingRecord {
    public static let kind = "train"
    public var epoch: Int  // 1-based
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var validationLoss: Double?
    public var validationTop1: Double?
    public var validationTop5: Double?
    /// A distilled model's heads alone (`validationTop1` is their average's).
    public var validationClassHeadTop1: Double?
    public var validationDistillationHeadTop1: Double?
    public var learningRate: Double  // at the end of the epoch
    public var imagesPerSecond: Double  // training steps only
    public var seconds: Double  // training and evaluation
    /// "bf16" (mixed) or "fp32": the compute precision the epoch ended in, which a resume may change
    /// (`Precision`'s name); nil in runs saved before it was recorded.
    public var precision: String?

    enum CodingKeys: String, CodingKey {
        case epoch, seconds, precision
        case trainLoss = "train_loss", trainAccuracy = "train_accuracy", validationLoss = "val_loss"
        case validationTop1 = "val_top1", validationTop5 = "val_top5", learningRate = "lr"
        case validationClassHeadTop1 = "val_class_head_top1", validationDistillationHeadTop1 = "val_distillation_head_top1"
        case imagesPerSecond = "images_per_second"
    }

    public var summary: String {
        var line = String(format: "train loss %.4f acc %.2f%%", trainLoss, trainAccuracy * 100)
        if let top1 = validationTop1, let loss = validationLoss {
            line += String(format: " | val loss %.4f top-1 %.2f%%", loss, top1 * 100)
            if let top5 = validationTop5 { line += String(format: " top-5 %.2f%%", top5 * 100) }
            if let classHead = validationClassHeadTop1, let distillationHead = validationDistillationHeadTop1 {
                line += String(format: " (class head %.2f%%, distillation head %.2f%%)", classHead * 100, distillationHead * 100)
            }
        }
        return line
    }
}

/// Where a run's validation images come from. Saved with the run, so that `--resume` validates on the same images
/// and never trains on them.
public enum ValidationSource: Codable, Equatable, Sendable {
    /// No validation: the data has no test part and no split was asked for.
    case none
    /// The data's own test part (`test/`, `val/`, CIFAR's test batch, IDX's t10k files).
    case testPart
    /// `fraction` of each class held out of the training part with `seed`; `files` are the held-out images' sources.
    case split(fraction: Double, seed: UInt64, files: [String])

    /// For the log.
    public var summary: String {
        switch self {
        case .none: return "no validation (the data has no test part; --val-split F holds out a fraction)"
        case .testPart: return "validation on the data's test part"
        case let .split(fraction, seed, files):
            return "validation on \(files.count) images held out of the training images (--val-split \(fraction), seed \(seed))"
        }
    }
}

extension TrainingError {
    /// `badFields` of the problems given (each with its fields in braces).
    static func fields(_ templates: [String]) -> TrainingError { .badFields(FieldProblem(templates)) }
    static func fields(_ template: String) -> TrainingError { .badFields(FieldProblem(template)) }
}

public enum TrainingError: Error, CustomStringConvertible {
    case badOptions(String)
    /// Settings out of range or at odds, naming their fields (which the command line names as flags).
    case badFields(FieldProblem)
    case nonFiniteLoss(value: Float, epoch: Int, batch: Int, checkpoint: URL?)
    case badCheckpoint(URL, String)
    case nonFiniteWeights(names: [String], epoch: Int, checkpoint: URL?)
    /// Data parallelism: another rank failed (it says why) and every rank stops.
    case otherRankFailed
    /// Data parallelism: the ranks' parameters differ after `epoch` (1-based): those of `ranks` differ from rank 0's.
    case replicasDiverged(epoch: Int, ranks: [String])

    public var description: String {
        switch self {
        case .badOptions(let why): return "training options: \(why)"
        case .badFields(let problem): return "\(problem)"
        case let .nonFiniteLoss(value, epoch, batch, checkpoint):
            let kept =
                checkpoint.map { "the last good checkpoint is kept at \($0.path) (resume with --resume)" }
                ?? "no checkpoint had been written yet"
            return "the loss became \(value) at epoch \(epoch + 1), batch \(batch + 1); training stopped. \(kept). "
                + "Try a lower --lr, a longer --warmup or --clip-grad."
        case let .badCheckpoint(url, why): return "\(url.path): \(why)"
        case let .nonFiniteWeights(names, epoch, checkpoint):
            let kept =
                checkpoint.map { "nothing was saved: the last good checkpoint is kept at \($0.path) (resume with --resume)" }
                ?? "nothing was saved (no checkpoint had been written yet)"
            let shown = names.prefix(3).joined(separator: ", ") + (names.count > 3 ? " and \(names.count - 3) more" : "")
            return "the weights became NaN or infinite in epoch \(epoch + 1) (\(shown)); training stopped and \(kept). "
                + "Try a lower --lr, a longer --warmup or --clip-grad."
        case .otherRankFailed: return "another rank failed (its message says why); every rank stopped at the same step"
        case let .replicasDiverged(epoch, ranks):
            return
                "after epoch \(epoch) the parameters of rank \(ranks.joined(separator: ", ")) differ from rank 0's: the replicas diverged "
                + "(a nondeterministic kernel or a rank with other data or options); training stopped"
        }
    }
}
