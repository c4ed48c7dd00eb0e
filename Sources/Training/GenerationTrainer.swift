import Datasets
import Foundation
import Generation
import Images
import NN
import Plots
import Tensors

/// The Image Transformer's recipe: tensor2tensor's (`image_transformer_base`: Adam with betas 0.9, 0.98 and eps 1e-9,
/// no weight decay, the "noam" schedule: a linear warm-up then 1/sqrt(step)); no augmentation.
public struct GenerationOptions: Recipe {
    public var epochs = 30
    public var batchSize = 16
    /// The rate at the end of the warm-up (t2t's learning_rate · d^-1/2 · warmup^-1/2).
    public var learningRate: Float = 1e-3
    public var minLearningRate: Float = 0
    public var warmupEpochs: Float?
    public var weightDecay: Float = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.98
    public var eps: Float = 1e-9
    /// Test images scored after each epoch (nil: all of them).
    public var evaluationImages: Int?
    public var autocast: DType?
    public var seed: UInt64 = 0

    public init() {}

    public var peakLearningRate: Float {
        get { learningRate }
        set { learningRate = newValue }
    }
    public var effectiveWarmupEpochs: Float { warmupEpochs ?? 1 }
    public static let warmupDefault = "1 epoch"
    public var inverseSquareRootDecay: Bool { true }
    /// A flipped or cropped image is another image to model: t2t trains on the images as they are.
    public var augmentation: Augmentation { .none }
    public var ownProblems: [String] {
        var problems: [String] = []
        if !(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1) { problems.append("{beta1} and {beta2} must be in [0, 1)") }
        if !(eps > 0 && eps.isFinite) { problems.append("{eps} must be positive, got \(eps)") }
        if let evaluationImages, evaluationImages < 1 { problems.append("{evaluationImages} must be at least 1, got \(evaluationImages)") }
        return problems
    }
}

/// One finished epoch of Image Transformer training, as written to `metrics.jsonl`: bits per dimension (the mean
/// negative log-likelihood of a sub-pixel in bits) on the training batches and on the test images.
public struct GenerationRecord: TrainingRecord {
    public static let kind = "train-generation"
    public var epoch: Int
    public var trainBitsPerDim: Double
    public var testBitsPerDim: Double?
    public var learningRate: Double
    public var imagesPerSecond: Double
    public var seconds: Double
    public var precision: String?

    enum CodingKeys: String, CodingKey {
        case epoch, seconds, precision
        case trainBitsPerDim = "train_bits_per_dim", testBitsPerDim = "test_bits_per_dim", learningRate = "lr"
        case imagesPerSecond = "images_per_second"
    }

    public var summary: String {
        String(format: "train %.4f bits/dim", trainBitsPerDim) + (testBitsPerDim.map { String(format: " | test %.4f bits/dim", $0) } ?? "")
    }
}

/// Trains an Image Transformer with the run loop: each batch's sub-pixels are predicted from the ones before them
/// (cross-entropy in nats, reported in bits per dimension); the test images are scored after each epoch; the
/// model is saved as an `ImageTransformerCheckpoint` folder (`vit generate` and `vit eval --task generation` read it).
public final class GenerationTrainer: Training<GenerationRecord> {
    public let model: ImageTransformer
    public let options: GenerationOptions
    public let test: (any TrainingImages)?

    /// The loader's normalisation that leaves every value as its 8-bit intensity (x / 255 / (1/255)).
    public static let rawMean: [Float] = [0, 0, 0], rawStd: [Float] = [1 / 255, 1 / 255, 1 / 255]

    public init(model: ImageTransformer, options: GenerationOptions, data: any TrainingImages, test: (any TrainingImages)?, folder: URL)
        throws
    {
        try options.validate()
        let c = model.config
        for (name, images) in [("the data", data), ("the test images", test)] as [(String, (any TrainingImages)?)] {
            guard let images else { continue }
            guard images.width == c.imageSize, images.height == c.imageSize else {
                throw TrainingError.badOptions(
                    "the model generates \(c.imageSize)x\(c.imageSize) images, \(name) has \(images.width)x\(images.height)")
            }
            if c.classCount > 0, images.classNames.count != c.classCount {
                throw TrainingError.badOptions(
                    "the model is conditioned on \(c.classCount) classes, \(name) has \(images.classNames.count)")
            }
        }
        self.model = model
        self.options = options
        self.test = test
        let optimizer = AdamW(
            ParameterGroup.standard(model, weightDecay: options.weightDecay), learningRate: options.learningRate, beta1: options.beta1,
            beta2: options.beta2, eps: options.eps)
        try super.init(
            recipe: options, images: data, mean: Self.rawMean, std: Self.rawStd, folder: folder, optimizer: optimizer, salt: 0x1A6E_7F,
            checkpointKey: Self.checkpointKey)
    }

    static let checkpointKey = "swiftvit_generation"

    typealias SavedRun = SavedDataRun<GenerationOptions, GenerationRecord, ImageTransformerConfig>

    /// Continues the run saved in `folder` on the same images (the epoch count may be raised with `epochs`).
    public static func resume(
        folder: URL, data: any TrainingImages, test: (any TrainingImages)?, epochs: Int? = nil, precision: Precision? = nil
    ) throws -> GenerationTrainer {
        let (url, saved, groups) = try RunCheckpoint.read(
            in: folder, key: checkpointKey, groups: ["model", "optimizer"], as: SavedRun.self, run: "generation training",
            writer: "vit train --task generation")
        let options = try saved.resumedOptions(
            url: url, digest: Trainer.digest(data.identity), count: data.count, kind: "images", epochs: epochs, precision: precision)
        do {
            let model = try Init.withoutDrawing { try ImageTransformer(saved.config) }
            try model.load(stateDict: groups["model"] ?? [:])
            let trainer = try GenerationTrainer(model: model, options: options, data: data, test: test, folder: folder)
            try trainer.restore(saved.state, optimizerState: groups["optimizer"] ?? [:], from: url)
            return trainer
        } catch let error as TrainingError {
            throw error
        } catch {
            throw TrainingError.badCheckpoint(url, "\(error)")
        }
    }

    /// The configuration a run in `folder` was saved with.
    public static func savedConfig(in folder: URL) throws -> ImageTransformerConfig {
        try RunCheckpoint.read(
            in: folder, key: checkpointKey, groups: [], as: SavedRun.self, run: "generation training", writer: "vit train --task generation"
        ).1.config
    }

    /// A batch of raw intensities [B, 3, H, W] (the loader's `rawMean`/`rawStd`) as the model's sub-pixels in raster
    /// order: rows, columns, then the first `channels` channels.
    public static func subpixels(_ images: Tensor, channels: Int) -> [UInt8] {
        let (b, h, w) = (images.shape[0], images.shape[2], images.shape[3])
        let values = images.toArray()
        var out = [UInt8](repeating: 0, count: b * h * w * channels)
        for n in 0..<b {
            for y in 0..<h {
                for x in 0..<w {
                    for c in 0..<channels {
                        out[((n * h + y) * w + x) * channels + c] = UInt8(max(0, min(255, values[((n * 3 + c) * h + y) * w + x].rounded())))
                    }
                }
            }
        }
        return out
    }

    override func willRun() { model.train() }

    override func loss(on batch: TrainingBatch) throws -> StepLoss {
        let c = model.config
        let subpixels = Self.subpixels(batch.images, channels: c.channels)
        let loss = try Autocast.run(options.precision.dtype) {
            try model(subpixels, labels: c.classCount > 0 ? batch.labels : nil)
        }.cast(to: .float32).reshape([-1, 256]).crossEntropy(targets: subpixels.map(Int.init))
        let value = loss.item()
        return StepLoss(total: loss, checked: [value], sums: ["nats": Double(value)])
    }

    override func runningAverages() -> [(name: String, value: Double)] {
        [("bits/dim", ImageTransformer.bitsPerDimension(nats: (state.sums["nats"] ?? 0) / Double(max(state.batch, 1))))]
    }

    override func record(of epoch: EpochTotals) throws -> GenerationRecord {
        var testBits: Double?
        if let test {
            onEvent(.evaluating(images: min(test.count, options.evaluationImages ?? .max)))
            testBits = try Self.bitsPerDimension(model, on: test, limit: options.evaluationImages, precision: options.precision)
        }
        return GenerationRecord(
            epoch: epoch.epoch, trainBitsPerDim: ImageTransformer.bitsPerDimension(nats: epoch.perStep("nats")), testBitsPerDim: testBits,
            learningRate: epoch.learningRate, imagesPerSecond: epoch.imagesPerSecond, seconds: epoch.seconds, precision: epoch.precision)
    }

    /// The model's bits per dimension on (the first `limit` of) `images`, in evaluation mode: the mean over every
    /// sub-pixel of every image. `progress` is called with the images done.
    public static func bitsPerDimension(
        _ model: ImageTransformer, on images: any TrainingImages, limit: Int? = nil, batchSize: Int = 32, precision: Precision = .fp32,
        progress: ((Int) -> Void)? = nil
    ) throws -> Double {
        let wasTraining = model.training
        model.eval()
        defer { model.train(wasTraining) }
        var options = TrainingLoader.Options(batchSize: batchSize, mean: rawMean, std: rawStd)
        (options.shuffle, options.dropLast) = (false, false)
        let batches = images.batches(options, epoch: 0, startBatch: 0)
        defer { batches.stop() }
        let c = model.config, wanted = limit ?? .max
        var nats = 0.0, counted = 0
        try Autograd.withNoGrad {
            while counted < wanted, let batch = try batches.next() {
                let n = min(batch.labels.count, wanted - counted)
                let subpixels = Array(subpixels(batch.images, channels: c.channels).prefix(n * c.sequenceLength))
                let logits = try Autocast.run(precision.dtype) {
                    try model(subpixels, labels: c.classCount > 0 ? Array(batch.labels.prefix(n)) : nil)
                }
                nats +=
                    Double(logits.cast(to: .float32).reshape([-1, 256]).crossEntropy(targets: subpixels.map(Int.init)).item()) * Double(n)
                counted += n
                progress?(counted)
            }
        }
        return ImageTransformer.bitsPerDimension(nats: nats / Double(max(counted, 1)))
    }

    override func weightsToCheck() -> [(name: String, tensor: Tensor)] { model.namedParameters() }

    override func saveModel(endOfEpoch: Bool) throws { try ImageTransformerCheckpoint.save(model, to: folder) }

    override func curves() -> RGBImage? {
        let history = state.history
        var series = [("train", history.map(\.trainBitsPerDim))]
        if history.contains(where: { $0.testBitsPerDim != nil }) { series.append(("test", history.map { $0.testBitsPerDim ?? .nan })) }
        return TrainingFigures.lossCurves(epochs: history.map(\.epoch), series: series, title: "bits per dimension")
    }

    override func checkpointTensors() -> [String: [String: Tensor]] { ["model": model.stateDict(), "optimizer": optimizer.state()] }

    override func savedRun(state: RunState<GenerationRecord>) -> any Encodable {
        SavedRun(options: options, state: state, config: model.config, dataCount: images.count, dataDigest: Trainer.digest(images.identity))
    }
}
