import CLIP
import Checkpoints
import Datasets
import Foundation
import Images
import NN
import Plots
import Tensors

/// The recipe of a contrastive (CLIP) training run: open_clip's defaults (`training/params.py` for ViTs: AdamW with
/// betas 0.9, 0.98, eps 1e-6, weight decay 0.2 on weights of rank >= 2, linear warm-up then cosine), unless changed.
/// Saved in every checkpoint.
public struct ContrastiveOptions: Codable, Equatable, Sendable {
    public var epochs = 30
    public var batchSize = 256
    public var learningRate: Float = 5e-4
    public var minLearningRate: Float = 0
    public var warmupEpochs: Float = 1
    public var weightDecay: Float = 0.2
    public var beta1: Float = 0.9
    public var beta2: Float = 0.98
    public var eps: Float = 1e-6
    /// open_clip trains on random resized crops of scale 0.9-1 (no flip); at 32 px a padded crop and a flip do the
    /// same work.
    public var augmentation: Augmentation = {
        var a = Augmentation.none
        a.cropPadding = 4
        a.horizontalFlip = true
        return a
    }()
    /// Seeds the initialisation, the data order, the augmentation and the caption each image gets in each step.
    public var seed: UInt64 = 0

    public init() {}

    public func validate() throws {
        var problems: [String] = []
        if epochs < 1 { problems.append("epochs must be at least 1") }
        if batchSize < 2 { problems.append("a contrastive batch needs at least 2 pairs") }
        if !(learningRate > 0 && learningRate.isFinite) { problems.append("learning rate must be positive") }
        if !(minLearningRate >= 0) { problems.append("minimum learning rate must be zero or more") }
        if !(warmupEpochs >= 0 && warmupEpochs < Float(epochs)) {
            problems.append("a warm-up of \(warmupEpochs) epochs must be shorter than the \(epochs) epochs of the run")
        }
        if !(weightDecay >= 0 && weightDecay.isFinite) { problems.append("weight decay must be zero or more") }
        if !(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1) { problems.append("Adam betas must be in [0, 1)") }
        if !problems.isEmpty { throw TrainingError.badOptions(problems.joined(separator: "; ")) }
    }
}

/// One finished epoch of contrastive training, as written to `metrics.jsonl`.
public struct ContrastiveRecord: Codable, Equatable, Sendable {
    public var epoch: Int  // 1-based
    /// Mean contrastive loss over the epoch's steps.
    public var loss: Double
    /// exp(logit_scale) at the epoch's end: the inverse temperature.
    public var logitScale: Double
    /// Zero-shot top-1 (%) on the held-out labelled images, when the run has them.
    public var zeroShotTop1: Double?
    public var learningRate: Double
    public var imagesPerSecond: Double
    public var seconds: Double

    enum CodingKeys: String, CodingKey {
        case epoch, loss, seconds
        case logitScale = "logit_scale", zeroShotTop1 = "zeroshot_top1", learningRate = "lr", imagesPerSecond = "images_per_second"
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = RunCheckpoint.nonFiniteNumbers.encoding
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}

/// Where a contrastive run stands; saved with each checkpoint.
public struct ContrastiveState: Codable, Sendable {
    /// Epochs finished, and batches finished of the current one.
    public var epoch = 0
    public var batch = 0
    public var step = 0
    public var lossSum: Double = 0
    public var steps = 0
    public var seen = 0
    public var trainingSeconds: Double = 0
    public var history: [ContrastiveRecord] = []
}

/// Contrastive image-text training of a CLIP (from scratch or from a checkpoint): each step encodes a batch of
/// images and one caption of each, and minimises CLIP's symmetric cross-entropy with a learned temperature (clamped
/// at 100). After each epoch, when labelled held-out images are given, it classifies them zero-shot from prompts
/// made of their class names.
///
/// The output folder holds the model in open_clip's layout (`open_clip_config.json`, `open_clip_model.safetensors`:
/// `vit zeroshot --model` reads it), `checkpoint.safetensors` (weights, optimiser moments and the state),
/// `metrics.jsonl` and `curves.png`. `resume` continues exactly.
public final class ContrastiveTrainer {
    public enum Event {
        case step(epoch: Int, batch: Int, batches: Int, loss: Double, learningRate: Float)
        case evaluating(images: Int)
        case epochFinished(ContrastiveRecord)
        case saved(URL)
    }

    /// Held-out labelled images and the templates of their zero-shot prompts.
    public struct ZeroShotEvaluation {
        public var images: ImageDataset
        public var templates: [String]
        public init(images: ImageDataset, templates: [String]) {
            self.images = images
            self.templates = templates
        }
    }

    public let model: CLIPModel
    public let tokenizer: CLIPTokenizer
    public let options: ContrastiveOptions
    public private(set) var state = ContrastiveState()
    public let data: ImageCaptions
    public let evaluation: ZeroShotEvaluation?
    public let folder: URL
    let optimizer: AdamW
    let schedule: WarmupCosineSchedule
    let random: RandomStream
    /// Each caption's token ids, worked out the first time it is drawn (captions repeat: templates, several epochs).
    private var tokenized: [String: [Int]] = [:]

    public var onEvent: (Event) -> Void = { _ in }
    /// Polled after every step; true saves a checkpoint and stops (Ctrl-C).
    public var shouldStop: () -> Bool = { false }
    /// Stop (with a checkpoint) after this many steps of this run.
    public var stepLimit: Int?

    public var stepsPerEpoch: Int { data.count / options.batchSize }
    public var checkpointURL: URL { folder.appendingPathComponent("checkpoint.safetensors") }

    public init(
        model: CLIPModel, tokenizer: CLIPTokenizer, options: ContrastiveOptions, data: ImageCaptions,
        evaluation: ZeroShotEvaluation? = nil, folder: URL
    ) throws {
        try options.validate()
        guard data.count >= options.batchSize else {
            throw TrainingError.badOptions("\(data.count) images are fewer than one batch of \(options.batchSize)")
        }
        let size = model.config.imageSize
        for (name, images) in [("the data", data.images), ("the evaluation images", evaluation?.images)] {
            guard let images else { continue }
            guard images.width == size, images.height == size else {
                throw TrainingError.badOptions("the model takes \(size)x\(size) images, \(name) has \(images.width)x\(images.height)")
            }
        }
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.data = data
        self.evaluation = evaluation
        self.folder = folder
        // open_clip's split: no decay on gains, biases, the class embedding and logit_scale (rank < 2).
        optimizer = AdamW(
            ParameterGroup.standard(model, weightDecay: options.weightDecay, noDecayNames: []), learningRate: options.learningRate,
            beta1: options.beta1, beta2: options.beta2, eps: options.eps)
        let steps = options.epochs * (data.count / options.batchSize)
        schedule = WarmupCosineSchedule(
            base: options.learningRate, warmupSteps: Int(options.warmupEpochs * Float(steps / options.epochs)),
            totalSteps: max(steps, 1), minimum: options.minLearningRate)
        random = RandomStream(SeededGenerator(seed: options.seed ^ 0xC11F))
        AtomicFile.removeStaleTemporaries(in: folder)
    }

    /// What `checkpoint.safetensors` holds besides tensors.
    struct SavedRun: Codable {
        var options: ContrastiveOptions
        var state: ContrastiveState
        var config: CLIPConfig
        var dataCount: Int
        var dataDigest: String
    }

    /// The digest of the images and their captions: a resumed run must see the same pairs.
    static func digest(_ data: ImageCaptions) -> String {
        Trainer.digest(data.images.sources + data.captions.map { $0.joined(separator: "\u{1F}") })
    }

    /// Continues the run saved in `folder` on the same pairs (the epoch count may be raised with `epochs`).
    public static func resume(
        folder: URL, tokenizer: CLIPTokenizer, data: ImageCaptions, evaluation: ZeroShotEvaluation?, epochs: Int? = nil
    ) throws -> ContrastiveTrainer {
        let (url, saved, groups) = try RunCheckpoint.read(
            in: folder, key: "swiftvit_contrastive", groups: ["model", "optimizer"], as: SavedRun.self, run: "contrastive training",
            writer: "vit train-clip")
        if saved.dataDigest != digest(data) {
            throw TrainingError.badCheckpoint(
                url, "the data changed since the run started: it trained on \(saved.dataCount) captioned images, not on these \(data.count)"
            )
        }
        var options = saved.options
        if let epochs { options.epochs = epochs }
        let model = Init.withoutDrawing { CLIPModel(saved.config) }
        let trainer: ContrastiveTrainer
        do {
            try model.load(stateDict: groups["model"]!)
            trainer = try ContrastiveTrainer(
                model: model, tokenizer: tokenizer, options: options, data: data, evaluation: evaluation, folder: folder)
            try trainer.optimizer.load(state: groups["optimizer"]!)
        } catch let error as TrainingError {
            throw error
        } catch {
            throw TrainingError.badCheckpoint(url, "\(error)")
        }
        trainer.state = saved.state
        return trainer
    }

    /// Trains until the last epoch, a stop request or the step limit.
    public func run() throws -> Trainer.Outcome {
        try GlobalRandom.using(random) { try runEpochs() }
    }

    private func runEpochs() throws -> Trainer.Outcome {
        model.train()
        var stepsThisRun = 0
        while state.epoch < options.epochs {
            var loaderOptions = TrainingLoader.Options(batchSize: options.batchSize, mean: model.config.mean, std: model.config.std)
            loaderOptions.augmentation = options.augmentation
            loaderOptions.seed = options.seed
            let loader = TrainingLoader(data.images, options: loaderOptions, epoch: state.epoch, startBatch: state.batch)
            defer { loader.stop() }
            while let batch = loader.next() {
                let started = Date()
                try step(batch)
                state.trainingSeconds += Date().timeIntervalSince(started)
                stepsThisRun += 1
                if state.batch < loader.batchCount, shouldStop() || stepsThisRun >= (stepLimit ?? .max) {
                    try save()
                    return .stopped
                }
            }
            try finishEpoch()
            if state.epoch < options.epochs, shouldStop() || stepsThisRun == stepLimit { return .stopped }
        }
        return .finished
    }

    /// The caption each image of batch `index` of `epoch` gets: drawn from (seed, epoch, batch) alone, so a resumed
    /// run draws the same ones.
    func captions(for members: [Int], epoch: Int, batch index: Int) -> [String] {
        var rng = SeededGenerator(seed: options.seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(epoch) << 32 ^ UInt64(index) ^ 0xCA97_1095)
        return members.map { i in data.captions[i][Int(rng.next() % UInt64(data.captions[i].count))] }
    }

    /// One optimiser step on a batch of images and one caption of each.
    func step(_ batch: TrainingBatch) throws {
        optimizer.learningRate = schedule.learningRate(at: state.step)
        let tokens = captions(for: batch.members, epoch: state.epoch, batch: batch.index).map { caption in
            if let known = tokenized[caption] { return known }
            let ids = tokenizer.tokenize(caption, contextLength: model.config.contextLength)
            tokenized[caption] = ids
            return ids
        }
        let loss = model.contrastiveLoss(imageEmbeddings: model.encodeImage(batch.images), textEmbeddings: model.encodeText(tokens))
        let value = loss.item()
        guard value.isFinite else {
            let kept = FileManager.default.fileExists(atPath: checkpointURL.path) ? checkpointURL : nil
            throw TrainingError.nonFiniteLoss(value: value, epoch: state.epoch, batch: batch.index, checkpoint: kept)
        }
        loss.backward()
        optimizer.step()
        optimizer.zeroGrad()
        model.clampLogitScale()
        state.lossSum += Double(value)
        state.steps += 1
        state.seen += batch.images.shape[0]
        state.step += 1
        state.batch = batch.index + 1
        onEvent(
            .step(
                epoch: state.epoch, batch: batch.index, batches: stepsPerEpoch, loss: state.lossSum / Double(state.steps),
                learningRate: optimizer.learningRate))
    }

    private func finishEpoch() throws {
        var top1: Double?
        if let evaluation {
            onEvent(.evaluating(images: evaluation.images.count))
            top1 =
                100 * Evaluation.zeroShot(model, tokenizer: tokenizer, templates: evaluation.templates, on: evaluation.images).top1
        }
        let record = ContrastiveRecord(
            epoch: state.epoch + 1, loss: state.lossSum / Double(max(state.steps, 1)),
            logitScale: Foundation.exp(Double(model.logitScale.item())),
            zeroShotTop1: top1, learningRate: Double(optimizer.learningRate),
            imagesPerSecond: Double(state.seen) / max(state.trainingSeconds, 1e-9), seconds: state.trainingSeconds)
        state.history.append(record)
        state.epoch += 1
        state.batch = 0
        state.lossSum = 0
        state.steps = 0
        state.seen = 0
        state.trainingSeconds = 0
        onEvent(.epochFinished(record))
        try save()
    }

    /// The model folder, metrics and curves, then the checkpoint; nothing is written when a weight is not finite.
    private func save() throws {
        let bad = model.namedParameters().filter { !$0.tensor.isAllFinite }.map(\.name)
        guard bad.isEmpty else {
            let kept = FileManager.default.fileExists(atPath: checkpointURL.path) ? checkpointURL : nil
            throw TrainingError.nonFiniteWeights(names: bad, epoch: state.batch == 0 ? state.epoch - 1 : state.epoch, checkpoint: kept)
        }
        try model.save(to: folder)
        let lines = state.history.map { $0.json() }.joined(separator: "\n") + "\n"
        try AtomicFile.write(Data(lines.utf8), to: folder.appendingPathComponent("metrics.jsonl"))
        let epochs = state.history.map(\.epoch)
        var figure = TrainingFigures.lossCurves(
            epochs: epochs, series: [("contrastive loss", state.history.map(\.loss))], title: "CLIP loss")
        if evaluation != nil {
            // Beside the loss, the zero-shot top-1 on the held-out labelled images (a percentage in the record).
            figure = TrainingFigures.curves(
                epochs: epochs, loss: [("contrastive", state.history.map(\.loss))],
                accuracy: [("zero-shot top-1, held out", state.history.map { ($0.zeroShotTop1.map { $0 / 100 }) ?? .nan })])
        }
        try PNG.write(figure, to: folder.appendingPathComponent("curves.png"))
        let run = SavedRun(options: options, state: state, config: model.config, dataCount: data.count, dataDigest: Self.digest(data))
        try RunCheckpoint.write(
            ["model": model.stateDict(), "optimizer": optimizer.state()], state: run, key: "swiftvit_contrastive", to: checkpointURL)
        onEvent(.saved(checkpointURL))
    }
}
