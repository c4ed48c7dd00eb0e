import Checkpoints
import Datasets
import Foundation
import Images
import NN
import Plots
import Tensors

/// The run loop every trainer shares (`Trainer`, `Pretrainer`, `ContrastiveTrainer`, and whatever trains next):
/// epochs, the step limit and stop requests, the learning-rate schedule, gradient accumulation and clipping, the
/// non-finite guards, the per-step and per-epoch events, `metrics.jsonl`, `curves.png` and the run checkpoint
/// (`RunCheckpoint`) that `--resume` continues from bit for bit.
///
/// A trainer subclasses it and supplies only its task: the loss of a batch (`loss(on:)`), what follows an optimiser
/// update (`afterUpdate`), the record of a finished epoch (`record(of:)`), and what it saves (`saveModel`,
/// `curves`, `checkpointTensors`, `savedRun`). Anything added to training (data parallelism, a new task) is added
/// here once.
open class Training<Record: TrainingRecord> {
    public typealias Event = TrainingEvent<Record>
    public typealias Outcome = TrainingOutcome

    /// Where the run stands: saved with each checkpoint, restored by `restore`.
    public internal(set) var state: RunState<Record>
    /// The run's folder: the model, `checkpoint.safetensors`, `metrics.jsonl`, `curves.png`.
    public let folder: URL
    /// The images the loop batches, in memory or streamed (a captioned set trains on its images, the captions drawn
    /// by the task).
    public let images: any TrainingImages
    let loop: RunLoopSettings
    /// How the loop's batches are made (normalisation, augmentation, mixing, seed, this rank's share).
    private(set) var loaderOptions: TrainingLoader.Options
    /// The metadata key the checkpoint's state is saved under ("swiftvit_training", ...).
    let checkpointKey: String
    let optimizer: any Optimizer
    let schedule: any LRSchedule
    /// Dropout, drop path and masks draw from this during `run` (its state is saved with each checkpoint).
    let random: RandomStream

    /// Called for progress; runs on the training thread.
    public var onEvent: (Event) -> Void = { _ in }
    /// Polled after every step; true saves a checkpoint and stops (Ctrl-C).
    public var shouldStop: () -> Bool = { false }
    /// Stop (with a checkpoint) after this many steps of this run.
    public var stepLimit: Int?
    /// Where each step's line goes when set (`StepLog`, `--log-steps`): its loss terms, rate and images.
    public var stepLog: URL?
    /// The seconds each step of this run took (forward, backward, the gradients' allreduce, the update).
    public private(set) var stepSeconds: [Double] = []
    /// The ranks this run trains with, when an MPI launcher started it (`distribute(over:)`); nil: this process alone.
    public private(set) var dataParallel: DataParallel?
    /// Whether this process writes the run's files: the only one, or rank 0 of several.
    public var writesFiles: Bool { dataParallel.map { $0.rank == 0 } ?? true }

    public var stepsPerEpoch: Int { images.count / loop.batchSize }
    public var epochs: Int { loop.epochs }
    public var batchSize: Int { loop.batchSize }
    /// The compute precision (bf16: mixed precision).
    public var precision: Precision { loop.precision }
    public var checkpointURL: URL { folder.appendingPathComponent("checkpoint.safetensors") }

    /// A new run of `recipe` over `images` (normalised with `mean` and `std`): `optimizer` follows its warm-up +
    /// cosine schedule, `random` is seeded from its seed and `salt`.
    init<R: Recipe>(
        recipe: R, images: any TrainingImages, mean: [Float], std: [Float], folder: URL, optimizer: any Optimizer, salt: UInt64,
        checkpointKey: String
    ) throws {
        let loop = recipe.loop
        guard images.count >= loop.batchSize else {
            throw TrainingError.badOptions(
                "\(images.count) training images are fewer than one batch of \(loop.batchSize) (--batch-size)")
        }
        self.images = images
        self.folder = folder
        self.loop = loop
        self.loaderOptions = recipe.loaderOptions(mean: mean, std: std)
        self.checkpointKey = checkpointKey
        self.optimizer = optimizer
        self.random = RandomStream(SeededGenerator(seed: recipe.seed ^ salt))
        let steps = loop.epochs * (images.count / loop.batchSize)
        if let drop = loop.learningRateDrop {
            schedule = StepSchedule(base: loop.learningRate, stepSize: max(drop * (images.count / loop.batchSize), 1), gamma: 0.1)
        } else if loop.inverseSquareRootDecay {
            schedule = NoamSchedule(peak: loop.learningRate, warmupSteps: Int(loop.warmupEpochs * Float(steps / loop.epochs)))
        } else {
            schedule = WarmupCosineSchedule(
                base: loop.learningRate, warmupSteps: Int(loop.warmupEpochs * Float(steps / loop.epochs)), totalSteps: max(steps, 1),
                minimum: loop.minLearningRate)
        }
        state = RunState()
        AtomicFile.removeStaleTemporaries(in: folder)
    }

    /// Trains as one rank of several (see `DataParallel`): each rank takes its share of every global batch of
    /// `--batch-size` images, which the ranks must divide.
    public func distribute(over parallel: DataParallel) throws {
        guard parallel.ranks > 1 else { return }
        guard loop.batchSize % parallel.ranks == 0 else {
            throw TrainingError.badOptions(
                "the global batch of \(loop.batchSize) images does not divide among \(parallel.ranks) ranks (--batch-size is per rank; a resumed run keeps its global batch)"
            )
        }
        if let stream = images as? StreamedImages, case .shards(let shards) = stream.source, shards.count < parallel.ranks {
            throw TrainingError.badOptions(
                "\(shards.count) shard\(shards.count == 1 ? "" : "s") cannot feed \(parallel.ranks) ranks: each rank reads shards of its own (split the data into at least as many shards as ranks)"
            )
        }
        dataParallel = parallel
        loaderOptions.share = DataShare(rank: parallel.rank, ranks: parallel.ranks)
    }

    // MARK: What a trainer supplies

    /// The loss of one batch, with what the epoch's record sums (the forward pass; the loop checks, backpropagates and
    /// steps).
    func loss(on batch: TrainingBatch) throws -> StepLoss { fatalError("a trainer overrides loss(on:)") }
    /// Before the first step of `run`: the model in training mode.
    func willRun() {}
    /// After each optimiser update: a weight average, a clamp.
    func afterUpdate() {}
    /// The running averages the progress bar shows after each step, from the epoch's sums.
    func runningAverages() -> [(name: String, value: Double)] { [] }
    /// The record of the epoch just trained (evaluating it, for a trainer with held-out data).
    func record(of epoch: EpochTotals) throws -> Record { fatalError("a trainer overrides record(of:)") }
    /// The weights checked before anything is saved, by name.
    func weightsToCheck() -> [(name: String, tensor: Tensor)] { [] }
    /// Writes the model folder (`endOfEpoch`: also what is drawn once an epoch, e.g. reconstructions).
    func saveModel(endOfEpoch: Bool) throws {}
    /// The figure of the history so far (`curves.png`).
    func curves() -> RGBImage? { nil }
    /// The checkpoint's tensors by group ("model", "optimizer", "ema", "teacher").
    func checkpointTensors() -> [String: [String: Tensor]] { [:] }
    /// The run state with what else the checkpoint holds (recipe, architecture, data digest).
    func savedRun(state: RunState<Record>) -> any Encodable { state }

    // MARK: The loop

    /// Trains until the last epoch, a stop request or the step limit.
    public func run() throws -> Outcome {
        try GlobalRandom.using(random) { try runEpochs() }
    }

    private func runEpochs() throws -> Outcome {
        willRun()
        try dataParallel.map(startReplicas)
        let log = try stepLog.map { try StepLog(url: $0, keepingSteps: state.step) }
        defer { log?.close() }
        var stepsThisRun = 0
        while state.epoch < loop.epochs {
            let loader = images.batches(loaderOptions, epoch: state.epoch, startBatch: state.batch)
            defer { loader.stop() }
            while let batch = try nextBatch(loader) {
                let started = Date()
                // A stop waits for the end of an accumulation: the gradients gathered so far are not saved.
                let betweenUpdates = (batch.index + 1) % loop.accumulate == 0
                let (sums, stop) = try step(batch) { [self] in
                    betweenUpdates && (shouldStop() || stepsThisRun + 1 >= (stepLimit ?? .max))
                }
                try log?.append(step: state.step, epoch: state.epoch, batch: batch, learningRate: optimizer.learningRate, sums: sums)
                state.trainingSeconds += Date().timeIntervalSince(started)
                stepSeconds.append(Date().timeIntervalSince(started))
                stepsThisRun += 1
                if state.batch < loader.batchCount, stop {
                    // The model too, so that a run stopped before its first epoch ends still leaves one to load.
                    try save(endOfEpoch: false)
                    return .stopped
                }
            }
            try finishEpoch()
            if state.epoch < loop.epochs, try agreed(shouldStop() || stepsThisRun == stepLimit) { return .stopped }
        }
        return .finished
    }

    /// The loader's next batch; with several ranks, nil on all of them as soon as one has none (a stream that ended
    /// early), and a failure on one stops them all (that rank throws its error, the others say which rank failed).
    private func nextBatch(_ loader: any TrainingBatches) throws -> TrainingBatch? {
        guard let parallel = dataParallel else { return try loader.next() }
        var batch: TrainingBatch?, failure: Error?
        do { batch = try loader.next() } catch { failure = error }
        let flags = try parallel.communicator.any([batch == nil, failure != nil])
        if flags[1] { parallel.failedTogether = true }
        if let failure { throw failure }
        if flags[1] { throw TrainingError.otherRankFailed }
        return flags[0] ? nil : batch
    }

    /// Whether this rank or any other wants `wanted`.
    private func agreed(_ wanted: Bool) throws -> Bool {
        guard let parallel = dataParallel else { return wanted }
        return try parallel.communicator.any([wanted])[0]
    }

    /// Before the first step of several ranks: rank 0's weights (model, average, teacher) in every rank.
    private func startReplicas(_ parallel: DataParallel) throws {
        let groups = checkpointTensors()
        try parallel.broadcast(["model", "ema", "teacher"].flatMap { sortedTensors(groups[$0] ?? [:]) })
        buffers = sortedTensors(groups["model"] ?? [:]).filter { !$0.requiresGrad }
        gradientBuckets = parallel.gradientBuckets(for: optimizer.allParameters)
    }

    private func sortedTensors(_ group: [String: Tensor]) -> [Tensor] { group.sorted { $0.key < $1.key }.map(\.value) }

    /// The model's tensors that are not trained (batch norm's running statistics, fixed position tables), which
    /// rank 0 broadcasts before each update; and the gradient buckets. Set when the ranks start.
    private var buffers: [Tensor] = []
    private var gradientBuckets: GradientBuckets?

    /// Forward and backward on `batch`, and an optimiser update when it completes an accumulation (every batch
    /// without accumulation; else every N-th, and the last of the epoch). Returns what the step adds to the epoch's
    /// sums, and whether the run stops after it (`wantsStop`, asked before the update, agreed by every rank).
    private func step(_ batch: TrainingBatch, wantsStop: () -> Bool) throws -> (sums: [String: Double], stop: Bool) {
        let accumulate = loop.accumulate
        let updates = (batch.index + 1) % accumulate == 0 || batch.index + 1 == stepsPerEpoch
        // The rate of the accumulation's first batch: N accumulated batches step as one batch N times larger would.
        optimizer.learningRate = schedule.learningRate(at: state.step - batch.index % accumulate)
        let loss = try self.loss(on: batch)
        var bad = loss.checked.first(where: { !$0.isFinite })
        let total = accumulate > 1 ? loss.total * (1 / Float(accumulate)) : loss.total
        var sums = loss.sums
        var stop: Bool
        if let parallel = dataParallel, let buckets = gradientBuckets {
            if updates {
                try parallel.broadcast(buffers)
                buckets.begin()
                total.backward(leafReady: buckets.ready)
                try buckets.finish()
            } else {
                total.backward()
            }
            // One collective for the step: the ranks' sums averaged, any rank's bad loss, any rank's stop request.
            let names = sums.keys.sorted()
            let values = names.map { sums[$0] ?? 0 } + [bad == nil ? 0 : 1, wantsStop() ? 1 : 0]
            let summed = try parallel.communicator.sum(values)
            for (i, name) in names.enumerated() { sums[name] = summed[i] / Double(parallel.ranks) }
            if summed[names.count] > 0 {
                parallel.failedTogether = true
                if bad == nil { bad = .nan }
            }
            stop = summed[names.count + 1] > 0
        } else {
            stop = false
            if bad == nil { total.backward() }
        }
        if let bad {
            throw TrainingError.nonFiniteLoss(value: bad, epoch: state.epoch, batch: batch.index, checkpoint: keptCheckpoint)
        }
        if dataParallel == nil { stop = wantsStop() }
        if updates {
            if loop.gradientClip > 0 { clipGradientNorm(optimizer.allParameters, maxNorm: loop.gradientClip) }
            optimizer.step()
            optimizer.zeroGrad()
            afterUpdate()
        }
        for (name, value) in sums { state.sums[name, default: 0] += value }
        state.seen += batch.images.shape[0]
        state.step += 1
        state.batch = batch.index + 1
        onEvent(
            .step(
                TrainingStep(
                    epoch: state.epoch, batch: batch.index, batches: stepsPerEpoch, learningRate: optimizer.learningRate,
                    averages: runningAverages())))
        return (sums, stop)
    }

    private func finishEpoch() throws {
        let started = Date()
        let totals = EpochTotals(
            epoch: state.epoch + 1, sums: state.sums, steps: max(state.batch, 1), images: max(state.seen, 1),
            learningRate: Double(optimizer.learningRate),
            imagesPerSecond: Double(state.seen * (dataParallel?.ranks ?? 1)) / max(state.trainingSeconds, 1e-9),
            seconds: state.trainingSeconds, precision: loop.precision.rawValue)
        if let parallel = dataParallel {
            let groups = checkpointTensors()
            try parallel.checkReplicas(["model", "ema"].flatMap { sortedTensors(groups[$0] ?? [:]) }, epoch: state.epoch + 1)
        }
        var record = try self.record(of: totals)
        record.seconds = totals.seconds + Date().timeIntervalSince(started)
        state.history.append(record)
        state.epoch += 1
        state.batch = 0
        state.sums = [:]
        state.seen = 0
        state.trainingSeconds = 0
        onEvent(.epochFinished(record))
        try save(endOfEpoch: true)
    }

    /// The checkpoint on disk, if one was written: what a run that fails now can be resumed from.
    private var keptCheckpoint: URL? { FileManager.default.fileExists(atPath: checkpointURL.path) ? checkpointURL : nil }

    /// The model folder, metrics and curves, then the checkpoint; nothing is written when a weight is not finite (the
    /// files on disk stay the last good ones).
    private func save(endOfEpoch: Bool) throws {
        let bad = weightsToCheck().filter { !$0.tensor.isAllFinite }.map(\.name)
        guard bad.isEmpty else {
            // Saved at an epoch's end, the state already counts that epoch as finished (and its batch is 0 again).
            throw TrainingError.nonFiniteWeights(
                names: bad, epoch: state.batch == 0 ? state.epoch - 1 : state.epoch, checkpoint: keptCheckpoint)
        }
        // Of several ranks, rank 0 alone writes (the replicas are identical).
        guard writesFiles else { return }
        try saveModel(endOfEpoch: endOfEpoch)
        try MetricsFile.write(state.history, to: folder.appendingPathComponent("metrics.jsonl"))
        if let figure = curves() { try PNG.write(figure, to: folder.appendingPathComponent("curves.png")) }
        var saved = state
        saved.random = random.generator
        try RunCheckpoint.write(checkpointTensors(), state: savedRun(state: saved), key: checkpointKey, to: checkpointURL)
        onEvent(.saved(checkpointURL))
    }

    /// Puts a resumed run where its checkpoint left it: the optimiser's moments, the position, the random state. The
    /// saved position is checked first (it is read from a file).
    func restore(_ saved: RunState<Record>, optimizerState: [String: Tensor], from url: URL) throws {
        var problems: [String] = []
        if !(0...loop.epochs).contains(saved.epoch) { problems.append("epoch \(saved.epoch) is outside 0...\(loop.epochs)") }
        if !(0...stepsPerEpoch).contains(saved.batch) { problems.append("batch \(saved.batch) is outside 0...\(stepsPerEpoch)") }
        if saved.step < 0 || saved.seen < 0 { problems.append("step \(saved.step) or images seen \(saved.seen) is negative") }
        if !(saved.trainingSeconds >= 0 && saved.trainingSeconds.isFinite) || !saved.sums.values.allSatisfy(\.isFinite) {
            problems.append("the epoch's sums or seconds are not finite")
        }
        if saved.history.count != saved.epoch { problems.append("\(saved.history.count) epoch records for \(saved.epoch) epochs done") }
        guard problems.isEmpty else { throw TrainingError.badCheckpoint(url, "the saved run state: \(problems.joined(separator: "; "))") }
        try optimizer.load(state: optimizerState)
        state = saved
        if let generator = saved.random { random.generator = generator }
    }
}

/// How a run ended.
public enum TrainingOutcome: Equatable, Sendable {
    /// All epochs done.
    case finished
    /// Stopped early (Ctrl-C or a step limit) after saving a checkpoint to resume from.
    case stopped
}

/// What a run reports while it goes on (the command line draws its progress from these).
public enum TrainingEvent<Record> {
    /// After each training step.
    case step(TrainingStep)
    /// The epoch's steps are over; its `images` held-out images are being evaluated.
    case evaluating(images: Int)
    case epochFinished(Record)
    case saved(URL)
}

/// Where a run is after a step, and the epoch's running averages so far.
public struct TrainingStep: Sendable {
    /// The epoch (0-based), the batch just done (0-based) and the epoch's batch count.
    public var epoch: Int, batch: Int, batches: Int
    public var learningRate: Float
    /// What the task reports (e.g. loss, accuracy), in the order shown.
    public var averages: [(name: String, value: Double)]

    /// For a progress bar: "loss 0.6931 acc 50.0% lr 1.00e-03" (an average named "acc" is a fraction, shown in %).
    public var summary: String {
        let shown = averages.map {
            $0.name == "acc" ? String(format: "acc %.1f%%", $0.value * 100) : String(format: "\($0.name) %.4f", $0.value)
        }
        return (shown + [String(format: "lr %.2e", learningRate)]).joined(separator: " ")
    }
}

/// One step's loss: the tensor to backpropagate, the values that must be finite, and what the epoch sums.
struct StepLoss {
    var total: Tensor
    var checked: [Float]
    var sums: [String: Double]
}

/// The epoch just trained, as the loop knows it: a trainer's `record(of:)` makes its record from this.
struct EpochTotals {
    /// 1-based.
    var epoch: Int
    /// The task's sums over the epoch's steps (`StepLoss.sums`), its steps and its images.
    var sums: [String: Double]
    var steps: Int
    var images: Int
    var learningRate: Double
    var imagesPerSecond: Double
    var seconds: Double
    var precision: String

    /// A sum's mean over the epoch's steps.
    func perStep(_ name: String) -> Double { (sums[name] ?? 0) / Double(steps) }
    /// A sum's mean over the epoch's images.
    func perImage(_ name: String) -> Double { (sums[name] ?? 0) / Double(images) }
}

/// What the run loop reads of a recipe: each trainer's options give it (`TrainingOptions.loop`, ...).
struct RunLoopSettings {
    var epochs: Int
    var batchSize: Int
    /// The peak rate, the rate at the end of the cosine, and the linear warm-up in epochs.
    var learningRate: Float
    var minLearningRate: Float
    var warmupEpochs: Float
    /// Batches per optimiser update, and the largest global gradient norm (0: no clipping).
    var accumulate = 1
    var gradientClip: Float = 0
    /// The compute precision (bf16: the matrix products under `Autocast`).
    var precision: Precision
    /// The epoch from which the rate is a tenth (a step decay instead of warm-up + cosine).
    var learningRateDrop: Int?
    /// The warm-up, then a decay with 1/sqrt(step) (tensor2tensor's "noam") instead of the cosine.
    var inverseSquareRootDecay = false
}

/// Where a run stands: enough, with the weights and optimiser state, to continue exactly. Saved with each checkpoint.
public struct RunState<Record: TrainingRecord>: Codable, Sendable {
    /// The epoch in progress (0-based) and the next batch within it.
    public var epoch = 0
    public var batch = 0
    /// Steps taken so far (the schedule's position).
    public var step = 0
    /// The images trained on in the epoch in progress, the seconds its steps took, and the task's sums over them.
    public var seen = 0
    public var trainingSeconds: Double = 0
    public var sums: [String: Double] = [:]
    public var history: [Record] = []
    /// The run's generator at the moment of saving (nil in contrastive runs saved before it was recorded).
    public var random: SeededGenerator?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case epoch, batch, step, seen, trainingSeconds, sums, history, random
        // Before the run loop was shared, each trainer saved its sums under its own names.
        case lossSum, correct, rankingLossSum
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epoch = try c.decode(Int.self, forKey: .epoch)
        batch = try c.decode(Int.self, forKey: .batch)
        step = try c.decode(Int.self, forKey: .step)
        seen = try c.decode(Int.self, forKey: .seen)
        trainingSeconds = try c.decode(Double.self, forKey: .trainingSeconds)
        history = try c.decode([Record].self, forKey: .history)
        random = try c.decodeIfPresent(SeededGenerator.self, forKey: .random)
        if let sums = try c.decodeIfPresent([String: Double].self, forKey: .sums) {
            self.sums = sums
        } else {
            // vit train summed each batch's loss times its images; the sums are per step now (batches are equal).
            let lossSum = try c.decodeIfPresent(Double.self, forKey: .lossSum) ?? 0
            let correct = try c.decodeIfPresent(Double.self, forKey: .correct)
            sums["loss"] = correct != nil && seen > 0 ? lossSum / Double(seen) * Double(batch) : lossSum
            sums["correct"] = correct
            sums["ranking_loss"] = try c.decodeIfPresent(Double.self, forKey: .rankingLossSum)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(epoch, forKey: .epoch)
        try c.encode(batch, forKey: .batch)
        try c.encode(step, forKey: .step)
        try c.encode(seen, forKey: .seen)
        try c.encode(trainingSeconds, forKey: .trainingSeconds)
        try c.encode(sums, forKey: .sums)
        try c.encode(history, forKey: .history)
        try c.encodeIfPresent(random, forKey: .random)
    }
}

/// One finished epoch of some kind of run, as a line of `metrics.jsonl`.
public protocol TrainingRecord: Codable, Equatable, Sendable {
    /// The line's `"kind"`: which command's epoch it is ("train", "pretrain", "train-clip").
    static var kind: String { get }
    /// 1-based.
    var epoch: Int { get }
    /// Training and evaluation.
    var seconds: Double { get set }
    var imagesPerSecond: Double { get }
    /// The epoch's numbers for the log, after "epoch N/M: " (e.g. "loss 0.1234").
    var summary: String { get }
}

extension TrainingRecord {
    /// One line of JSON with its `"kind"` first, then the record's fields in sorted order.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = RunCheckpoint.nonFiniteNumbers.encoding
        let fields = String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self).dropFirst()
        return "{\"kind\":\"\(Self.kind)\"" + (fields == "}" ? "" : ",") + fields
    }
}

extension SavedDataRun where Options: Recipe {
    /// The recipe a resumed run continues with: the saved one, with the epoch count and precision a resume may change,
    /// checked; first the data is checked to be the run's (`digest`; `count` items, `kind` "images", "captioned
    /// images", ...). Problems are errors naming the checkpoint at `url`.
    func resumedOptions(url: URL, digest: String, count: Int, kind: String, epochs: Int?, precision: Precision?) throws -> Options {
        if dataDigest != digest {
            throw TrainingError.badCheckpoint(
                url, "the data changed since the run started: it trained on \(dataCount) \(kind), not on these \(count)")
        }
        var options = self.options
        if let epochs { options.epochs = epochs }
        if let precision { options.precision = precision }
        do { try options.validate() } catch { throw TrainingError.badCheckpoint(url, "the saved recipe: \(error)") }
        return options
    }
}

/// What the checkpoint of a run of a task's own data (pre-training, contrastive training, detection) holds besides tensors: the
/// recipe, where the run stands, the model's configuration and which data it saw (a resumed run must see the same).
/// (A classifier's run keeps more: `Trainer.SavedRun`.)
struct SavedDataRun<Options: Codable, Record: TrainingRecord, Config: Codable>: Codable {
    var options: Options
    var state: RunState<Record>
    var config: Config
    var dataCount: Int
    var dataDigest: String
}
