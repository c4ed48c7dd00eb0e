import Checkpoints
import Datasets
import Foundation
import Images
import NN
import Plots
import Tensors
import ViT

/// Trains a ViT classifier on an in-memory data set: AdamW with warm-up + cosine, label smoothing, optional
/// mixup/cutmix, gradient clipping and a weight EMA; evaluation after every epoch; a checkpoint after every epoch
/// (and when stopped) from which `resume` continues exactly as if the run had never stopped.
///
/// The output folder is a native checkpoint folder (`model.safetensors` + `config.json`, what `vit predict`
/// reads) plus `checkpoint.safetensors` (weights, EMA, optimiser moments and the `TrainingState`),
/// `metrics.jsonl` (one `EpochRecord` per line) and `curves.png`.
public final class Trainer {
    /// What the trainer reports while it runs (the command line draws progress from these).
    public enum Event {
        /// After each training step: the epoch's running loss and accuracy.
        case step(epoch: Int, batch: Int, batches: Int, loss: Double, accuracy: Double, learningRate: Float)
        case evaluating(epoch: Int)
        case epochFinished(EpochRecord)
        case saved(URL)
    }

    public enum Outcome: Equatable {
        /// All epochs done.
        case finished
        /// Stopped early (Ctrl-C or a step limit) after saving a checkpoint to resume from.
        case stopped
    }

    public let model: any ImageModel
    /// The weight average that is evaluated and saved when `emaDecay` is set.
    public let averageModel: (any ImageModel)?
    public let options: TrainingOptions
    /// DeiT's teacher (`options.distillation`), run in evaluation mode on each training batch.
    public let teacher: (any ImageModel)?
    public private(set) var state: TrainingState
    public let trainSet: ImageDataset
    public let validationSet: ImageDataset?
    /// Where `validationSet` came from (saved with the run).
    public let validationSource: ValidationSource
    public let folder: URL
    let optimizer: Optimizer
    let schedule: WarmupCosineSchedule
    /// Dropout and drop path draw from this during `run` (its state is saved with each checkpoint).
    let random: RandomStream

    /// Called for progress; runs on the training thread.
    public var onEvent: (Event) -> Void = { _ in }
    /// Polled after every step; true saves a checkpoint and stops (Ctrl-C).
    public var shouldStop: () -> Bool = { false }
    /// Stop (with a checkpoint) after this many steps of this run.
    public var stepLimit: Int?

    public var stepsPerEpoch: Int { trainSet.count / options.batchSize }
    public var checkpointURL: URL { folder.appendingPathComponent("checkpoint.safetensors") }

    /// A new run: `model` as initialised, writing into `folder`.
    public init(
        model: any ImageModel, options: TrainingOptions, trainSet: ImageDataset,
        validationSet: ImageDataset?, validationSource: ValidationSource? = nil, folder: URL, teacher: (any ImageModel)? = nil
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
        if case .split = validationSource, let validationSet, !Set(validationSet.sources).isDisjoint(with: trainSet.sources) {
            throw TrainingError.badOptions("the validation images overlap the training images")
        }
        guard trainSet.count >= options.batchSize else {
            throw TrainingError.badOptions("\(trainSet.count) training images are fewer than one batch of \(options.batchSize)")
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
        self.trainSet = trainSet
        self.validationSet = validationSet
        self.validationSource = validationSource ?? (validationSet == nil ? .none : .testPart)
        self.folder = folder
        if options.headOnly == true { FineTuning.freezeAllButHead(model) }
        if options.layerDecay != nil && architecture.vit == nil {
            throw TrainingError.badOptions("layer-wise learning-rate decay counts a ViT's blocks; this model is a convnet")
        }
        let groups =
            options.layerDecay.map { decay in
                ParameterGroup.layerDecayed(model, depth: architecture.vit?.depth ?? 0, weightDecay: options.weightDecay, layerDecay: decay)
            } ?? ParameterGroup.standard(model, weightDecay: options.weightDecay)
        switch options.optimizer ?? .adamw {
        case .adamw: optimizer = AdamW(groups, learningRate: options.learningRate)
        case .sgd: optimizer = SGD(groups, learningRate: options.learningRate, momentum: options.momentum ?? 0.9)
        }
        let steps = options.epochs * (trainSet.count / options.batchSize)
        schedule = WarmupCosineSchedule(
            base: options.learningRate, warmupSteps: Int(options.effectiveWarmupEpochs * Float(steps / options.epochs)),
            totalSteps: max(steps, 1), minimum: options.minLearningRate)
        if options.emaDecay != nil {
            let average = try Init.withoutDrawing { try architecture.build() }
            try average.load(stateDict: model.stateDict().mapValues { $0.copy() })
            average.eval()
            averageModel = average
        } else {
            averageModel = nil
        }
        state = TrainingState()
        random = RandomStream(SeededGenerator(seed: options.seed ^ 0x5EED_D809))
        AtomicFile.removeStaleTemporaries(in: folder)
    }

    /// Continues the run saved in `folder`: the same recipe (its epoch count may be raised with `epochs`), weights,
    /// optimiser moments, EMA, data position and random state.
    /// The split must be the saved one (`savedRun(in:)` tells the caller which images to hold out).
    /// `precision` (`.float32`, or `.bfloat16` for mixed precision) changes the dtype the matrix products run in from
    /// here on, as a host without bf16 kernels needs; nil keeps the run's. Weights and moments are float32 either way,
    /// so the checkpoint serves both, but only an unchanged precision continues bit for bit.
    public static func resume(
        folder: URL, trainSet: ImageDataset, validationSet: ImageDataset?,
        validationSource: ValidationSource? = nil, epochs: Int? = nil, teacher: (any ImageModel)? = nil, precision: DType? = nil
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
        if let digest = saved.trainingDigest, digest != Self.digest(trainSet.sources) {
            throw TrainingError.badCheckpoint(
                url,
                "the data changed since the run started: it trained on \(saved.trainingCount ?? 0) images, not on these \(trainSet.count)")
        }
        var options = saved.options
        if let epochs { options.epochs = epochs }
        if let precision { options.autocast = precision == .float32 ? nil : precision }
        guard saved.classNames == trainSet.classNames else {
            throw TrainingError.badCheckpoint(url, "was trained on classes \(saved.classNames), the data has \(trainSet.classNames)")
        }
        let model = try Init.withoutDrawing { try saved.architecture.build() }
        do {
            try model.load(stateDict: tensors["model"]!)
        } catch {
            throw TrainingError.badCheckpoint(url, "model weights: \(error)")
        }
        let trainer = try Trainer(
            model: model, options: options, trainSet: trainSet, validationSet: validationSet,
            validationSource: validationSource ?? saved.validation, folder: folder, teacher: teacher)
        do {
            try trainer.optimizer.load(state: tensors["optimizer"]!)
            try trainer.averageModel?.load(stateDict: tensors["ema"]!)
        } catch {
            throw TrainingError.badCheckpoint(url, "\(error)")
        }
        trainer.state = saved.state
        trainer.random.generator = saved.state.random
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
            in: folder, key: "swiftvit_training", groups: ["model", "ema", "optimizer"], as: SavedRun.self, run: "training",
            writer: "vit train")
    }

    /// What `checkpoint.safetensors` holds besides tensors.
    public struct SavedRun: Codable {
        public var options: TrainingOptions
        public var state: TrainingState
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

    /// Trains until the last epoch, a stop request or the step limit.
    public func run() throws -> Outcome {
        try GlobalRandom.using(random) { try runEpochs() }
    }

    private func runEpochs() throws -> Outcome {
        model.train()
        var stepsThisRun = 0
        let normalisation = (mean: model.architecture.data.mean, std: model.architecture.data.std)
        while state.epoch < options.epochs {
            var loaderOptions = TrainingLoader.Options(batchSize: options.batchSize, mean: normalisation.mean, std: normalisation.std)
            loaderOptions.augmentation = options.augmentation
            loaderOptions.mixing = options.mixing
            loaderOptions.seed = options.seed
            let loader = TrainingLoader(trainSet, options: loaderOptions, epoch: state.epoch, startBatch: state.batch)
            defer { loader.stop() }
            while let batch = loader.next() {
                let started = Date()
                try step(batch)
                state.trainingSeconds += Date().timeIntervalSince(started)
                stepsThisRun += 1
                // A stop waits for the end of an accumulation: the gradients gathered so far are not saved.
                let betweenSteps = state.batch % (options.accumulate ?? 1) == 0
                if state.batch < loader.batchCount, betweenSteps, shouldStop() || stepsThisRun >= (stepLimit ?? .max) {
                    // The model too, so that a run stopped before its first epoch ends still leaves one to load.
                    try save()
                    return .stopped
                }
            }
            try finishEpoch()
            if state.epoch < options.epochs, shouldStop() || stepsThisRun == stepLimit { return .stopped }
        }
        return .finished
    }

    /// Forward and backward on `batch`, and an optimiser step when it completes an accumulation (every batch
    /// without accumulation; else every N-th, and the last of the epoch).
    func step(_ batch: TrainingBatch) throws {
        let accumulate = options.accumulate ?? 1
        let stepsNow = (batch.index + 1) % accumulate == 0 || batch.index + 1 == stepsPerEpoch
        // The rate of the accumulation's first batch: N accumulated batches step as one batch N times larger would.
        optimizer.learningRate = schedule.learningRate(at: state.step - batch.index % accumulate)
        let outputs = Autocast.run(options.autocast ?? .float32) { model.classify(batch.images) }  // float32
        // The class head learns the labels; with a teacher, DeiT's distillation head learns the teacher.
        let classLogits = teacher == nil ? outputs.logits : outputs.classHeadLogits ?? outputs.logits  // [B, classes]
        var loss =
            batch.targets.map { classLogits.crossEntropy(softTargets: $0, labelSmoothing: options.labelSmoothing) }
            ?? classLogits.crossEntropy(targets: batch.labels, labelSmoothing: options.labelSmoothing)
        if let teacher, let distillation = options.distillation, let distillationLogits = outputs.distillationHeadLogits {
            let teacherLogits = Autograd.withNoGrad { teacher(Self.teacherInput(batch.images, student: model, teacher: teacher)) }
            loss = distillation.loss(base: loss, distillationLogits: distillationLogits, teacherLogits: teacherLogits)
        }
        let logits = outputs.logits
        let value = loss.item()
        guard value.isFinite else {
            let kept = FileManager.default.fileExists(atPath: checkpointURL.path) ? checkpointURL : nil
            throw TrainingError.nonFiniteLoss(value: value, epoch: state.epoch, batch: batch.index, checkpoint: kept)
        }
        (accumulate > 1 ? loss * (1 / Float(accumulate)) : loss).backward()
        if stepsNow {
            if options.gradientClip > 0 { clipGradientNorm(optimizer.allParameters, maxNorm: options.gradientClip) }
            optimizer.step()
            optimizer.zeroGrad()
        }
        if stepsNow, let averageModel, let decay = options.emaDecay {
            // Warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early on the average follows
            // the weights closely instead of holding on to the random initialisation for thousands of steps.
            let warmedUp = min(decay, Float(1 + state.step) / Float(10 + state.step))
            Self.updateAverage(averageModel, toward: model, decay: warmedUp)
        }

        let predictions = logits.detach().argmax(axis: 1)
        state.correct += zip(predictions, batch.labels).filter { $0 == $1 }.count
        state.lossSum += Double(value) * Double(batch.labels.count)
        state.seen += batch.labels.count
        state.step += 1
        state.batch = batch.index + 1
        onEvent(
            .step(
                epoch: state.epoch, batch: batch.index, batches: stepsPerEpoch, loss: state.lossSum / Double(state.seen),
                accuracy: Double(state.correct) / Double(state.seen), learningRate: optimizer.learningRate))
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

    private func finishEpoch() throws {
        let started = Date()
        var record = EpochRecord(
            epoch: state.epoch + 1, trainLoss: state.lossSum / Double(max(state.seen, 1)),
            trainAccuracy: Double(state.correct) / Double(max(state.seen, 1)),
            learningRate: Double(optimizer.learningRate),
            imagesPerSecond: Double(state.seen) / max(state.trainingSeconds, 1e-9),
            seconds: state.trainingSeconds, precision: Autocast.precisionName(options.autocast))
        if let validationSet {
            onEvent(.evaluating(epoch: state.epoch))
            let result = Autocast.run(options.autocast ?? .float32) {
                Evaluation.run(evaluatedModel, on: validationSet, mean: model.architecture.data.mean, std: model.architecture.data.std)
            }
            record.validationLoss = result.loss
            record.validationTop1 = result.top1
            record.validationTop5 = result.top5
            (record.validationClassHeadTop1, record.validationDistillationHeadTop1) = (result.classHeadTop1, result.distillationHeadTop1)
        }
        record.seconds += Date().timeIntervalSince(started)
        state.history.append(record)
        state.epoch += 1
        state.batch = 0
        state.lossSum = 0
        state.correct = 0
        state.seen = 0
        state.trainingSeconds = 0
        onEvent(.epochFinished(record))
        try save()
    }

    /// Refuses to save weights that are not all finite (a diverged step): the files on disk stay the last good ones.
    private func checkFinite() throws {
        var bad = model.namedParameters().filter { !$0.1.isAllFinite }.map { $0.0 }
        bad += (averageModel?.namedParameters() ?? []).filter { !$0.1.isAllFinite }.map { "ema.\($0.0)" }
        guard bad.isEmpty else {
            let kept = FileManager.default.fileExists(atPath: checkpointURL.path) ? checkpointURL : nil
            // Saved at an epoch's end, the state already counts that epoch as finished (and its batch is 0 again).
            throw TrainingError.nonFiniteWeights(names: bad, epoch: state.batch == 0 ? state.epoch - 1 : state.epoch, checkpoint: kept)
        }
    }

    /// The model folder, then the checkpoint, once the weights are known to be finite.
    private func save() throws {
        try checkFinite()
        try saveModel()
        try saveCheckpoint()
    }

    /// The native folder: model (EMA if on) with its config, metrics and curves.
    private func saveModel() throws {
        var architecture = model.architecture
        architecture.labels = trainSet.classNames
        try architecture.save(evaluatedModel.stateDict(), to: folder)
        let lines = state.history.map { $0.json() }.joined(separator: "\n") + "\n"
        try AtomicFile.write(Data(lines.utf8), to: folder.appendingPathComponent("metrics.jsonl"))
        let history = state.history
        var accuracy: [(name: String, values: [Double])] = [
            ("train", history.map(\.trainAccuracy)), ("validation", history.map { $0.validationTop1 ?? .nan })
        ]
        if history.contains(where: { $0.validationClassHeadTop1 != nil }) {
            // A distilled model: each head alone beside the average that `validation` scores.
            accuracy.append(("class head", history.map { $0.validationClassHeadTop1 ?? .nan }))
            accuracy.append(("distillation head", history.map { $0.validationDistillationHeadTop1 ?? .nan }))
        }
        let figure = TrainingFigures.curves(
            epochs: history.map(\.epoch),
            loss: [("train", history.map(\.trainLoss)), ("validation", history.map { $0.validationLoss ?? .nan })],
            accuracy: accuracy)
        try PNG.write(figure, to: folder.appendingPathComponent("curves.png"))
    }

    /// Everything needed to continue, in one file written atomically.
    private func saveCheckpoint() throws {
        var saved = state
        saved.random = random.generator
        let run = SavedRun(
            options: options, state: saved, config: model.architecture.vit, model: model.architecture, classNames: trainSet.classNames,
            validation: validationSource, trainingCount: trainSet.count, trainingDigest: Self.digest(trainSet.sources))
        try RunCheckpoint.write(
            ["model": model.stateDict(), "ema": averageModel?.stateDict() ?? [:], "optimizer": optimizer.state()], state: run,
            key: "swiftvit_training", to: checkpointURL)
        onEvent(.saved(checkpointURL))
    }
}
