import Checkpoints
import Datasets
import Foundation
import Images
import NN
import Plots
import Tensors
import ViT

/// Trains a classifier (ViT, DeiT with a teacher, ResNet) on an in-memory data set: AdamW or SGD with warm-up +
/// cosine, label smoothing, optional mixup/cutmix, gradient clipping and a weight EMA; evaluation after every epoch.
/// The run loop, checkpoints and exact resume are `Training`'s.
///
/// The output folder is a native checkpoint folder (`model.safetensors` + `config.json`, what `vit predict`
/// reads) plus `checkpoint.safetensors` (weights, EMA, optimiser moments and the run state),
/// `metrics.jsonl` (one `EpochRecord` per line) and `curves.png`.
public final class Trainer: Training<EpochRecord> {
    public let model: any ImageModel
    /// The weight average that is evaluated and saved when `emaDecay` is set.
    public let averageModel: (any ImageModel)?
    public let options: TrainingOptions
    /// DeiT's teacher (`options.distillation`), run in evaluation mode on each training batch.
    public let teacher: (any ImageModel)?
    public var trainSet: any TrainingImages { images }
    public let validationSet: (any TrainingImages)?
    /// Where `validationSet` came from (saved with the run).
    public let validationSource: ValidationSource

    /// A new run: `model` as initialised, writing into `folder`.
    public init(
        model: any ImageModel, options: TrainingOptions, trainSet: any TrainingImages,
        validationSet: (any TrainingImages)?, validationSource: ValidationSource? = nil, folder: URL, teacher: (any ImageModel)? = nil
    ) throws {
        try options.validate()
        if options.distillation != nil {
            guard let teacher else { throw TrainingError.badOptions("distillation needs a teacher model") }
            guard teacher.architecture.numClasses == trainSet.classNames.count else {
                throw TrainingError.badOptions(
                    "the teacher has \(teacher.architecture.numClasses) classes, the data \(trainSet.classNames.count)")
            }
            guard model.architecture.vit?.distillationToken == true else {
                throw TrainingError.badOptions("distillation trains a ViT's distillation token: the student needs one (--distilled)")
            }
            teacher.eval()
            // The teacher's weights never change here: each product packs them once, not at every step.
            teacher.freezeForInference()
        }
        self.teacher = options.distillation == nil ? nil : teacher
        // A split names its images, so overlap is checkable (other sources name images of other parts).
        if case .split = validationSource, let validationSet, !Set(validationSet.identity).isDisjoint(with: trainSet.identity) {
            throw TrainingError.badOptions("the validation images overlap the training images")
        }
        let architecture = model.architecture
        guard architecture.numClasses == trainSet.classNames.count else {
            throw TrainingError.badOptions("the model has \(architecture.numClasses) classes, the data \(trainSet.classNames.count)")
        }
        guard architecture.imageSize == trainSet.width, trainSet.width == trainSet.height else {
            throw TrainingError.badOptions(
                "the model takes \(architecture.imageSize)x\(architecture.imageSize) images, the data has \(trainSet.width)x\(trainSet.height)"
            )
        }
        self.model = model
        self.options = options
        self.validationSet = validationSet
        self.validationSource = validationSource ?? (validationSet == nil ? .none : .testPart)
        if options.headOnly == true { FineTuning.freezeAllButHead(model) }
        if options.layerDecay != nil && architecture.vit == nil {
            throw TrainingError.badOptions("layer-wise learning-rate decay counts a ViT's blocks; this model is a convnet")
        }
        let groups =
            options.layerDecay.map { decay in
                ParameterGroup.layerDecayed(model, depth: architecture.vit?.depth ?? 0, weightDecay: options.weightDecay, layerDecay: decay)
            } ?? ParameterGroup.standard(model, weightDecay: options.weightDecay)
        let optimizer: any Optimizer
        switch options.optimizer ?? .adamw {
        case .adamw: optimizer = AdamW(groups, learningRate: options.learningRate)
        case .sgd: optimizer = SGD(groups, learningRate: options.learningRate, momentum: options.momentum ?? 0.9)
        }
        if options.emaDecay != nil {
            let average = try Init.withoutDrawing { try architecture.build() }
            try average.load(stateDict: model.stateDict().mapValues { $0.copy() })
            average.eval()
            averageModel = average
        } else {
            averageModel = nil
        }
        try super.init(
            recipe: options, images: trainSet, mean: architecture.data.mean, std: architecture.data.std, folder: folder,
            optimizer: optimizer,
            salt: 0x5EED_D809, checkpointKey: Self.checkpointKey)
    }

    static let checkpointKey = "swiftvit_training"

    /// Continues the run saved in `folder`: the same recipe (its epoch count may be raised with `epochs`), weights,
    /// optimiser moments, EMA, data position and random state.
    /// The split must be the saved one (`savedRun(in:)` tells the caller which images to hold out).
    /// `precision` (`.float32`, or `.bfloat16` for mixed precision) changes the dtype the matrix products run in from
    /// here on, as a host without bf16 kernels needs; nil keeps the run's. Weights and moments are float32 either way,
    /// so the checkpoint serves both, but only an unchanged precision continues bit for bit.
    public static func resume(
        folder: URL, trainSet: any TrainingImages, validationSet: (any TrainingImages)?,
        validationSource: ValidationSource? = nil, epochs: Int? = nil, teacher: (any ImageModel)? = nil, precision: Precision? = nil
    ) throws -> Trainer {
        let (url, saved, tensors) = try readCheckpoint(in: folder)
        if let savedSource = saved.validation, let validationSource, savedSource != validationSource {
            let what: String
            if case .split(_, _, let before) = savedSource, case .split(_, _, let now) = validationSource {
                let kept = Set(before)
                what = "\(now.filter { !kept.contains($0) }.count) of the \(now.count) images held out now were not held out by the run"
            } else {
                what = "the run had \(savedSource.summary); these data give \(validationSource.summary)"
            }
            throw TrainingError.badCheckpoint(url, "the data changed since the run started: \(what)")
        }
        if let digest = saved.trainingDigest, digest != Self.digest(trainSet.identity) {
            throw TrainingError.badCheckpoint(
                url,
                "the data changed since the run started: it trained on \(saved.trainingCount ?? 0) images, not on these \(trainSet.count)")
        }
        var options = saved.options
        if let epochs { options.epochs = epochs }
        if let precision { options.precision = precision }
        guard saved.classNames == trainSet.classNames else {
            throw TrainingError.badCheckpoint(url, "was trained on classes \(saved.classNames), the data has \(trainSet.classNames)")
        }
        do { try options.validate() } catch { throw TrainingError.badCheckpoint(url, "the saved recipe: \(error)") }
        let model: any ImageModel
        do { model = try Init.withoutDrawing { try saved.architecture.build() } } catch {
            throw TrainingError.badCheckpoint(url, "the saved architecture: \(error)")
        }
        do {
            try model.load(stateDict: tensors["model"]!)
        } catch {
            throw TrainingError.badCheckpoint(url, "model weights: \(error)")
        }
        let trainer = try Trainer(
            model: model, options: options, trainSet: trainSet, validationSet: validationSet,
            validationSource: validationSource ?? saved.validation, folder: folder, teacher: teacher)
        do {
            try trainer.restore(saved.state, optimizerState: tensors["optimizer"]!, from: url)
            try trainer.averageModel?.load(stateDict: tensors["ema"]!)
        } catch {
            throw TrainingError.badCheckpoint(url, "\(error)")
        }
        return trainer
    }

    /// Which weights of a run `exportWeights` writes.
    public enum SavedWeights: String, CaseIterable, Sendable {
        /// The optimiser's weights as they stood at the checkpoint.
        case raw
        /// The exponential moving average (what `model.safetensors` holds when the run had `--ema`).
        case ema
    }

    /// Writes the raw or averaged weights of the run checkpointed in `folder` as a native folder (weights + config
    /// with class names and data config) at `output`. A run with an EMA saves and evaluates the average; near the end
    /// of a schedule the raw weights can be the better model, and this is how to get at them.
    public static func exportWeights(ofRunIn folder: URL, _ which: SavedWeights, to output: URL) throws {
        let (url, saved, tensors) = try readCheckpoint(in: folder)
        let chosen = tensors[which == .raw ? "model" : "ema"]!
        guard !chosen.isEmpty else {
            throw TrainingError.badCheckpoint(url, "has no \(which) weights (the run had no --ema)")
        }
        var architecture = try saved.architecture
        architecture.labels = saved.classNames
        let model = try Init.withoutDrawing { try architecture.build() }
        do {
            try model.load(stateDict: chosen)
        } catch {
            throw TrainingError.badCheckpoint(url, "\(which) weights: \(error)")
        }
        try architecture.save(model.stateDict(), to: output)
    }

    /// What a run in `folder` was started with (recipe, architecture, classes, validation), without its tensors.
    public static func savedRun(in folder: URL) throws -> SavedRun {
        try readCheckpoint(in: folder).1
    }

    /// The training state and the tensors of `folder/checkpoint.safetensors`, grouped by prefix (model, ema, optimizer).
    private static func readCheckpoint(in folder: URL) throws -> (URL, SavedRun, [String: [String: Tensor]]) {
        try RunCheckpoint.read(
            in: folder, key: checkpointKey, groups: ["model", "ema", "optimizer"], as: SavedRun.self, run: "training",
            writer: "vit train")
    }

    /// What `checkpoint.safetensors` holds besides tensors.
    public struct SavedRun: Codable {
        public var options: TrainingOptions
        public var state: RunState<EpochRecord>
        /// A ViT run's configuration (every run before convnets could be trained has it).
        public var config: ViTConfig?
        /// The architecture (nil in runs saved before it was recorded: those are ViTs, `config`).
        public var model: Architecture?
        public var classNames: [String]
        /// nil in runs saved before validation sources were recorded.
        public var validation: ValidationSource?
        /// What the run trains.
        public var architecture: Architecture {
            get throws {
                guard let architecture = model ?? config.map(Architecture.vit) else {
                    throw TrainingError.badOptions("the run's checkpoint names no architecture")
                }
                return architecture
            }
        }
        /// The training images' count and `digest` of their sources (nil in older runs).
        public var trainingCount: Int?
        public var trainingDigest: String?
    }

    /// FNV-1a (64 bit) over the sources, one per line: a fingerprint of which images a run trains on.
    static func digest(_ sources: [String]) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for source in sources {
            for byte in source.utf8 + [10] { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        }
        return String(hash, radix: 16)
    }

    /// The class head learns the labels; with a teacher, DeiT's distillation head learns the teacher.
    override func loss(on batch: TrainingBatch) throws -> StepLoss {
        let outputs = Autocast.run(options.precision.dtype) { model.classify(batch.images) }  // float32
        let classLogits = teacher == nil ? outputs.logits : outputs.classHeadLogits ?? outputs.logits  // [B, classes]
        var loss =
            batch.targets.map { classLogits.crossEntropy(softTargets: $0, labelSmoothing: options.labelSmoothing) }
            ?? classLogits.crossEntropy(targets: batch.labels, labelSmoothing: options.labelSmoothing)
        if let teacher, let distillation = options.distillation, let distillationLogits = outputs.distillationHeadLogits {
            let teacherLogits = Autograd.withNoGrad { teacher(Self.teacherInput(batch.images, student: model, teacher: teacher)) }
            loss = distillation.loss(base: loss, distillationLogits: distillationLogits, teacherLogits: teacherLogits)
        }
        let predictions = outputs.logits.detach().argmax(axis: 1)
        let correct = zip(predictions, batch.labels).filter { $0 == $1 }.count
        let value = loss.item()
        return StepLoss(total: loss, checked: [value], sums: ["loss": Double(value), "correct": Double(correct)])
    }

    override func willRun() { model.train() }

    override func afterUpdate() {
        guard let averageModel, let decay = options.emaDecay else { return }
        // Warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early on the average follows
        // the weights closely instead of holding on to the random initialisation for thousands of steps.
        let warmedUp = min(decay, Float(1 + state.step) / Float(10 + state.step))
        Self.updateAverage(averageModel, toward: model, decay: warmedUp)
    }

    override func runningAverages() -> [(name: String, value: Double)] {
        [
            ("loss", (state.sums["loss"] ?? 0) / Double(max(state.batch, 1))),
            ("acc", (state.sums["correct"] ?? 0) / Double(max(state.seen, 1)))
        ]
    }

    /// The student's batch as the teacher takes it (DeiT runs the teacher on the same augmented images): resized
    /// (bicubic) when the input sizes differ, renormalised when the teacher's mean and std differ from the student's.
    static func teacherInput(_ images: Tensor, student: any ImageModel, teacher: any ImageModel) -> Tensor {
        let (from, to) = (student.architecture.data, teacher.architecture.data)
        let size = teacher.architecture.imageSize
        var x = images  // [B, 3, H, W]
        if from.mean != to.mean || from.std != to.std {
            let scale = (0..<3).map { from.std[$0] / to.std[$0] }, shift = (0..<3).map { (from.mean[$0] - to.mean[$0]) / to.std[$0] }
            x = x * Tensor(scale, shape: [1, 3, 1, 1]) + Tensor(shift, shape: [1, 3, 1, 1])
        }
        guard x.shape[2] != size || x.shape[3] != size else { return x }
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let channelsLast = x.permute([0, 2, 3, 1]).toArray()  // [B, H, W, 3]
        var out: [Float] = []
        out.reserveCapacity(b * size * size * 3)
        for i in 0..<b {
            out += Resampling.resample(
                Array(channelsLast[(i * h * w * 3)..<((i + 1) * h * w * 3)]), height: h, width: w, channels: 3, newHeight: size,
                newWidth: size, filter: .bicubic)
        }
        return Tensor(out, shape: [b, size, size, 3]).permute([0, 3, 1, 2])
    }

    /// average = decay · average + (1 - decay) · weights, parameter by parameter.
    static func updateAverage(_ average: any ImageModel, toward model: any ImageModel, decay: Float) {
        for (a, p) in zip(average.parameters(), model.parameters()) { a.device.backend.lerp(a, toward: p, decay: decay) }
    }

    /// The model that is evaluated and saved: the EMA when there is one.
    public var evaluatedModel: any ImageModel { averageModel ?? model }

    override func record(of epoch: EpochTotals) throws -> EpochRecord {
        var record = EpochRecord(
            epoch: epoch.epoch, trainLoss: epoch.perStep("loss"), trainAccuracy: epoch.perImage("correct"),
            learningRate: epoch.learningRate, imagesPerSecond: epoch.imagesPerSecond, seconds: epoch.seconds,
            precision: epoch.precision)
        if let validationSet {
            onEvent(.evaluating(images: validationSet.count))
            // Of several ranks, each evaluates its share of the held-out set, and the parts are added up.
            var result = try Autocast.run(options.precision.dtype) {
                try Evaluation.run(
                    evaluatedModel, on: validationSet, mean: model.architecture.data.mean, std: model.architecture.data.std,
                    share: dataParallel?.share ?? .whole)
            }
            if let parallel = dataParallel { result = try parallel.combine(result) }
            record.validationLoss = result.loss
            record.validationTop1 = result.top1
            // Top-5 of five classes or fewer is always 100%: not worth a number.
            record.validationTop5 = validationSet.classNames.count > 5 ? result.top5 : nil
            (record.validationClassHeadTop1, record.validationDistillationHeadTop1) = (result.classHeadTop1, result.distillationHeadTop1)
        }
        return record
    }

    override func weightsToCheck() -> [(name: String, tensor: Tensor)] {
        model.namedParameters() + (averageModel?.namedParameters().map { ("ema.\($0.name)", $0.tensor) } ?? [])
    }

    /// The native folder: model (EMA if on) with its config.
    override func saveModel(endOfEpoch: Bool) throws {
        var architecture = model.architecture
        architecture.labels = trainSet.classNames
        try architecture.save(evaluatedModel.stateDict(), to: folder)
    }

    /// Loss and accuracy, train and validation (and each head of a distilled model).
    override func curves() -> RGBImage? {
        let history = state.history
        var accuracy: [(name: String, values: [Double])] = [
            ("train", history.map(\.trainAccuracy)), ("validation", history.map { $0.validationTop1 ?? .nan })
        ]
        if history.contains(where: { $0.validationClassHeadTop1 != nil }) {
            // A distilled model: each head alone beside the average that `validation` scores.
            accuracy.append(("class head", history.map { $0.validationClassHeadTop1 ?? .nan }))
            accuracy.append(("distillation head", history.map { $0.validationDistillationHeadTop1 ?? .nan }))
        }
        return TrainingFigures.curves(
            epochs: history.map(\.epoch),
            loss: [("train", history.map(\.trainLoss)), ("validation", history.map { $0.validationLoss ?? .nan })],
            accuracy: accuracy)
    }

    override func checkpointTensors() -> [String: [String: Tensor]] {
        ["model": model.stateDict(), "ema": averageModel?.stateDict() ?? [:], "optimizer": optimizer.state()]
    }

    override func savedRun(state: RunState<EpochRecord>) -> any Encodable {
        SavedRun(
            options: options, state: state, config: model.architecture.vit, model: model.architecture, classNames: trainSet.classNames,
            validation: validationSource, trainingCount: trainSet.count, trainingDigest: Self.digest(trainSet.identity))
    }
}
