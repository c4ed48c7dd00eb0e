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
public struct ContrastiveOptions: Recipe {
    public var epochs = 30
    public var batchSize = 256
    public var learningRate: Float = 5e-4
    public var minLearningRate: Float = 0
    /// Linear warm-up; nil means 1 epoch.
    public var warmupEpochs: Float?
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

    /// Mixed precision (bf16 matrix products with float32 weights), or nil for float32 throughout.
    public var autocast: DType?
    public var peakLearningRate: Float {
        get { learningRate }
        set { learningRate = newValue }
    }
    public var effectiveWarmupEpochs: Float { warmupEpochs ?? 1 }
    public static let warmupDefault = "1 epoch"
    public static var smallestBatch: Int { 2 }
    public var ownProblems: [String] {
        adamBetaProblems(beta1, beta2) + (eps > 0 && eps.isFinite ? [] : ["{eps} must be a positive number, got \(eps)"])
    }
}

/// One finished epoch of contrastive training, as written to `metrics.jsonl`.
public struct ContrastiveRecord: TrainingRecord {
    public static let kind = "train-clip"
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
    /// The compute precision the epoch ended in, as `EpochRecord`'s (nil in runs saved before it was recorded).
    public var precision: String?

    enum CodingKeys: String, CodingKey {
        case epoch, loss, seconds, precision
        case logitScale = "logit_scale", zeroShotTop1 = "zeroshot_top1", learningRate = "lr", imagesPerSecond = "images_per_second"
    }

    public var summary: String {
        String(format: "loss %.4f, logit scale %.1f", loss, logitScale)
            + (zeroShotTop1.map { String(format: ", zero-shot top-1 %.2f%%", $0) } ?? "")
    }
}

/// Contrastive image-text training of a CLIP (from scratch or from a checkpoint): each step encodes a batch of
/// images and one caption of each, and minimises CLIP's symmetric cross-entropy with a learned temperature (clamped
/// at 100). After each epoch, when labelled held-out images are given, it classifies them zero-shot from prompts
/// made of their class names.
///
/// The output folder holds the model in open_clip's layout (`open_clip_config.json`, `open_clip_model.safetensors`:
/// `vit zeroshot --model` reads it), `checkpoint.safetensors` (weights, optimiser moments and the state),
/// `metrics.jsonl` and `curves.png`. `resume` continues exactly.
public final class ContrastiveTrainer: Training<ContrastiveRecord> {
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
    public let data: any CaptionedImages
    public let evaluation: ZeroShotEvaluation?
    /// Each caption's token ids, worked out the first time it is drawn (captions repeat: templates, several epochs);
    /// not kept for a stream's captions, which would grow with the data set.
    private var tokenized: [String: [Int]] = [:]

    public init(
        model: CLIPModel, tokenizer: CLIPTokenizer, options: ContrastiveOptions, data: any CaptionedImages,
        evaluation: ZeroShotEvaluation? = nil, folder: URL
    ) throws {
        try options.validate()
        let size = model.config.imageSize
        let checked: [(String, (any TrainingImages)?)] = [("the data", data.trainingImages), ("the evaluation images", evaluation?.images)]
        for (name, images) in checked {
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
        // open_clip's split: no decay on gains, biases, the class embedding and logit_scale (rank < 2).
        let optimizer = AdamW(
            ParameterGroup.standard(model, weightDecay: options.weightDecay, noDecayNames: []), learningRate: options.learningRate,
            beta1: options.beta1, beta2: options.beta2, eps: options.eps)
        try super.init(
            recipe: options, images: data.trainingImages, mean: model.config.mean, std: model.config.std, folder: folder,
            optimizer: optimizer,
            salt: 0xC11F, checkpointKey: Self.checkpointKey)
    }

    static let checkpointKey = "swiftvit_contrastive"

    /// What `checkpoint.safetensors` holds besides tensors.
    typealias SavedRun = SavedDataRun<ContrastiveOptions, ContrastiveRecord, CLIPConfig>

    /// The digest of the images and their captions: a resumed run must see the same pairs.
    static func digest(_ data: any CaptionedImages) -> String {
        Trainer.digest(data.pairIdentity)
    }

    /// Continues the run saved in `folder` on the same pairs (the epoch count may be raised with `epochs`).
    public static func resume(
        folder: URL, tokenizer: CLIPTokenizer, data: any CaptionedImages, evaluation: ZeroShotEvaluation?, epochs: Int? = nil,
        precision: Precision? = nil
    ) throws -> ContrastiveTrainer {
        let (url, saved, groups) = try RunCheckpoint.read(
            in: folder, key: checkpointKey, groups: ["model", "optimizer"], as: SavedRun.self, run: "contrastive training",
            writer: "vit train-clip")
        do { try saved.config.validate() } catch { throw TrainingError.badCheckpoint(url, "the saved CLIP configuration: \(error)") }
        let options = try saved.resumedOptions(
            url: url, digest: digest(data), count: data.trainingImages.count, kind: "captioned images", epochs: epochs, precision: precision
        )
        let model = Init.withoutDrawing { CLIPModel(saved.config) }
        let trainer: ContrastiveTrainer
        do {
            try model.load(stateDict: groups["model"]!)
            trainer = try ContrastiveTrainer(
                model: model, tokenizer: tokenizer, options: options, data: data, evaluation: evaluation, folder: folder)
            try trainer.restore(saved.state, optimizerState: groups["optimizer"]!, from: url)
        } catch let error as TrainingError {
            throw error
        } catch {
            throw TrainingError.badCheckpoint(url, "\(error)")
        }
        return trainer
    }

    override func willRun() { model.train() }

    /// The caption each image of `batch` gets in `epoch`: drawn from (seed, epoch, the image) alone, so a resumed run
    /// draws the same ones, and so does any rank the image falls to.
    func captions(for batch: TrainingBatch, epoch: Int) -> [String] {
        batch.members.indices.map { b in
            var rng = SeededGenerator(seed: TrainingLoader.mix(options.seed ^ 0xCA97_1095, UInt64(epoch), UInt64(batch.members[b])))
            let choices = batch.captions?[b] ?? data.captions(of: batch.members[b]) ?? [""]
            return choices[Int(rng.next() % UInt64(max(choices.count, 1)))]
        }
    }

    /// Of several ranks: every rank's embeddings [N·B, E], in rank order, as one process of the global batch holds
    /// them (open_clip's `gather_features`). The other ranks' rows are constants here; this rank's carry the gradient
    /// N times over, since each of the N ranks computes the same loss and DDP averages their gradients: so each
    /// encoder gets exactly the gradient of one process, and the temperature, which every rank sees whole, too.
    private func gathered(_ local: Tensor, _ parallel: DataParallel) throws -> Tensor {
        let (b, e) = (local.shape[0], local.shape[1])
        let counts = try parallel.communicator.gather(UInt64(b))
        guard Set(counts).count == 1 else {
            throw TrainingError.badOptions(
                "the ranks hold batches of \(counts.map(String.init).joined(separator: ", ")) images: contrastive training needs equal ones"
            )
        }
        let all = try parallel.communicator.gather(local.toArray())
        let parts = (0..<parallel.ranks).map { r in
            r == parallel.rank
                ? local.scalingGradient(by: Float(parallel.ranks)) : Tensor(Array(all[(r * b * e)..<((r + 1) * b * e)]), shape: [b, e])
        }
        return Tensor.concat(parts, axis: 0)
    }

    /// CLIP's symmetric cross-entropy on a batch of images and one caption of each.
    override func loss(on batch: TrainingBatch) throws -> StepLoss {
        let keep = batch.captions == nil
        let tokens = captions(for: batch, epoch: state.epoch).map { caption in
            if let known = tokenized[caption] { return known }
            let ids = tokenizer.tokenize(caption, contextLength: model.config.contextLength)
            if keep { tokenized[caption] = ids }
            return ids
        }
        let (images, texts) = Autocast.run(options.precision.dtype) { (model.encodeImage(batch.images), model.encodeText(tokens)) }
        var (imageEmbeddings, textEmbeddings) = (images.cast(to: .float32), texts.cast(to: .float32))
        if let parallel = dataParallel {
            (imageEmbeddings, textEmbeddings) = (try gathered(imageEmbeddings, parallel), try gathered(textEmbeddings, parallel))
        }
        let loss = model.contrastiveLoss(imageEmbeddings: imageEmbeddings, textEmbeddings: textEmbeddings)
        let value = loss.item()
        return StepLoss(total: loss, checked: [value], sums: ["loss": Double(value)])
    }

    override func afterUpdate() { model.clampLogitScale() }

    override func runningAverages() -> [(name: String, value: Double)] {
        [("loss", (state.sums["loss"] ?? 0) / Double(max(state.batch, 1)))]
    }

    /// The epoch's loss and temperature, and the zero-shot top-1 on the held-out labelled images.
    override func record(of epoch: EpochTotals) throws -> ContrastiveRecord {
        var top1: Double?
        if let evaluation {
            onEvent(.evaluating(images: evaluation.images.count))
            // In float32 whatever the training's precision (the zero-shot scores are read as float32).
            // Of several ranks, each classifies its share of the held-out images, and the parts are added up.
            var result = try Evaluation.zeroShot(
                model, tokenizer: tokenizer, templates: evaluation.templates, on: evaluation.images, share: dataParallel?.share ?? .whole)
            if let parallel = dataParallel { result = try parallel.combine(result) }
            top1 = 100 * result.top1
        }
        return ContrastiveRecord(
            epoch: epoch.epoch, loss: epoch.perStep("loss"), logitScale: Foundation.exp(Double(model.logitScale.item())),
            zeroShotTop1: top1, learningRate: epoch.learningRate, imagesPerSecond: epoch.imagesPerSecond, seconds: epoch.seconds,
            precision: epoch.precision)
    }

    override func weightsToCheck() -> [(name: String, tensor: Tensor)] { model.namedParameters() }

    override func saveModel(endOfEpoch: Bool) throws { try model.save(to: folder) }

    /// The loss, and beside it the zero-shot top-1 on the held-out labelled images (a percentage in the record).
    override func curves() -> RGBImage? {
        let epochs = state.history.map(\.epoch)
        guard evaluation != nil else {
            return TrainingFigures.lossCurves(epochs: epochs, series: [("contrastive loss", state.history.map(\.loss))], title: "CLIP loss")
        }
        return TrainingFigures.curves(
            epochs: epochs, loss: [("contrastive", state.history.map(\.loss))],
            accuracy: [("zero-shot top-1, held out", state.history.map { ($0.zeroShotTop1.map { $0 / 100 }) ?? .nan })])
    }

    override func checkpointTensors() -> [String: [String: Tensor]] { ["model": model.stateDict(), "optimizer": optimizer.state()] }

    override func savedRun(state: RunState<ContrastiveRecord>) -> any Encodable {
        SavedRun(options: options, state: state, config: model.config, dataCount: data.trainingImages.count, dataDigest: Self.digest(data))
    }
}
