import Datasets
import Foundation
import Tensors
import ViT

/// The part every training recipe shares (`TrainingOptions`, `PretrainingOptions`, `ContrastiveOptions`): how long,
/// how big, the warm-up + cosine schedule, weight decay, precision and seed. It is checked here once, and it is what
/// the run loop (`Training`) reads; each recipe adds its own settings and their checks (`ownProblems`).
public protocol Recipe: Codable, Equatable, Sendable {
    /// The method's defaults.
    init()
    var epochs: Int { get set }
    var batchSize: Int { get set }
    /// The peak learning rate in force (the end of the warm-up); setting it fixes the rate.
    var peakLearningRate: Float { get set }
    /// Whether the peak rate is worked out from another setting (MAE's base rate), which the recipe checks itself.
    var learningRateIsDerived: Bool { get }
    /// The default peak rate and warm-up, in words (for a command's help).
    static var learningRateDefault: String { get }
    static var warmupDefault: String { get }
    /// The rate at the end of the cosine decay.
    var minLearningRate: Float { get set }
    /// The linear warm-up in epochs; nil means the method's default (`effectiveWarmupEpochs`).
    var warmupEpochs: Float? { get set }
    /// The warm-up in force.
    var effectiveWarmupEpochs: Float { get }
    /// Decoupled weight decay (on the weights each trainer's parameter groups decay).
    var weightDecay: Float { get set }
    /// How the compute precision is saved (`precision` is what code reads): the dtype matrix products run in under
    /// mixed precision (bf16, with float32 master weights, gradients and optimiser state), nil for float32 throughout.
    var autocast: DType? { get set }
    /// Seeds the initialisation, the data order, the augmentation and whatever else the run draws.
    var seed: UInt64 { get set }
    /// What each training image goes through, and how a batch is mixed (mixup, CutMix; none unless a recipe has it).
    var augmentation: Augmentation { get }
    var mixing: BatchMixing { get }
    /// Batches per optimiser update (gradient accumulation; 1 steps every batch).
    var batchesPerUpdate: Int { get }
    /// The largest global gradient norm; 0 turns clipping off.
    var gradientClip: Float { get }
    /// DETR's step decay: the learning rate times 0.1 from this epoch on, instead of the cosine (nil: the cosine).
    var learningRateDrop: Int? { get }
    /// The Transformer's schedule (tensor2tensor's "noam": the warm-up, then 1/sqrt(step)) instead of the cosine.
    var inverseSquareRootDecay: Bool { get }
    /// The smallest batch the method works with (a contrastive batch compares pairs).
    static var smallestBatch: Int { get }
    /// The recipe's own settings that are out of range, each said in a few words with its field in braces
    /// (`FieldProblem`).
    var ownProblems: [String] { get }
}

extension Recipe {
    public static var smallestBatch: Int { 1 }
    public static var learningRateDefault: String { "\(Self().peakLearningRate)" }
    public var mixing: BatchMixing { BatchMixing() }
    public var learningRateIsDerived: Bool { false }
    public var batchesPerUpdate: Int { 1 }
    public var gradientClip: Float { 0 }
    public var learningRateDrop: Int? { nil }
    public var inverseSquareRootDecay: Bool { false }

    /// The compute precision: bf16 is mixed precision (`Autocast`), fp32 float32 throughout.
    public var precision: Precision {
        get { Precision(autocast: autocast) }
        set { autocast = newValue.autocast }
    }

    /// Every setting in range, or one `TrainingError.badFields` naming each field that is not.
    public func validate() throws {
        var problems: [String] = []
        if epochs < 1 { problems.append("{epochs} must be at least 1, got \(epochs)") }
        if batchSize < Self.smallestBatch {
            problems.append(
                "{batchSize} must be at least \(Self.smallestBatch)\(Self.smallestBatch > 1 ? " (a contrastive batch compares pairs)" : ""), got \(batchSize)"
            )
        }
        if !learningRateIsDerived, !(peakLearningRate > 0 && peakLearningRate.isFinite) {
            problems.append("{learningRate} must be a positive number, got \(peakLearningRate)")
        }
        if !(minLearningRate >= 0 && minLearningRate.isFinite) {
            problems.append("{minLearningRate} must be zero or more, got \(minLearningRate)")
        }
        if !(effectiveWarmupEpochs >= 0 && effectiveWarmupEpochs < Float(epochs)) {
            problems.append(
                "{warmupEpochs}: a warm-up of \(effectiveWarmupEpochs) epochs must be shorter than the \(epochs) epochs of the run")
        }
        if !(weightDecay >= 0 && weightDecay.isFinite) { problems.append("{weightDecay} must be zero or more, got \(weightDecay)") }
        problems += Self.problems(of: augmentation)
        problems += ownProblems
        if !problems.isEmpty { throw TrainingError.fields(problems) }
    }

    /// What every recipe's augmentation must be (a run checkpoint's too: its numbers are read from the file).
    static func problems(of a: Augmentation) -> [String] {
        var problems: [String] = []
        if !(0...1024).contains(a.cropPadding) { problems.append("{augmentation.cropPadding} must be in 0...1024, got \(a.cropPadding)") }
        if !(0...16).contains(a.randAugmentOps) {
            problems.append("{augmentation.randAugmentOps} must be in 0...16 operations, got \(a.randAugmentOps)")
        }
        if !(a.randAugmentMagnitude >= 0 && a.randAugmentMagnitude <= 30) {
            problems.append("{augmentation.randAugmentMagnitude} must be in [0, 30], got \(a.randAugmentMagnitude)")
        }
        if !(a.randomErasing >= 0 && a.randomErasing <= 1) {
            problems.append("{augmentation.randomErasing} must be in [0, 1], got \(a.randomErasing)")
        }
        if let scale = a.resizedCropScale, !(scale.count == 2 && scale[0] > 0 && scale[0] <= scale[1] && scale[1] <= 1) {
            problems.append("{augmentation.resizedCropScale} must be two areas 0 < a <= b <= 1, got \(scale)")
        }
        return problems
    }

    /// How the run loop's batches are made: shuffled and augmented from `seed`, normalised with `mean` and `std`.
    public func loaderOptions(mean: [Float], std: [Float]) -> TrainingLoader.Options {
        var loader = TrainingLoader.Options(batchSize: batchSize, mean: mean, std: std)
        (loader.augmentation, loader.mixing, loader.seed) = (augmentation, mixing, seed)
        return loader
    }

    /// What the run loop reads of the recipe.
    var loop: RunLoopSettings {
        RunLoopSettings(
            epochs: epochs, batchSize: batchSize, learningRate: peakLearningRate, minLearningRate: minLearningRate,
            warmupEpochs: effectiveWarmupEpochs, accumulate: batchesPerUpdate, gradientClip: gradientClip, precision: precision,
            learningRateDrop: learningRateDrop, inverseSquareRootDecay: inverseSquareRootDecay)
    }
}

/// Adam's betas in range (the recipes with their own betas).
func adamBetaProblems(_ beta1: Float, _ beta2: Float) -> [String] {
    beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 ? [] : ["Adam's {beta1} and {beta2} must be in [0, 1), got \(beta1) and \(beta2)"]
}
