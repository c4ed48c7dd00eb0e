import Checkpoints
import Datasets
import Detection
import Foundation
import Images
import NN
import Plots
import Tensors
import ViT

/// The recipe of a DETR run: facebookresearch/detr's (`main.py`: AdamW at 1e-4, the backbone at 1e-5, weight decay
/// 1e-4, gradient norm clipped at 0.1, the rate a tenth from `lr_drop` on, no warm-up), unless changed. Saved in
/// every checkpoint.
public struct DetectionOptions: Recipe {
    public var epochs = 50
    public var batchSize = 8
    public var learningRate: Float = 1e-4
    /// The backbone's rate, as a fraction of `learningRate` (DETR's 1e-5 of 1e-4).
    public var backboneLearningRateScale: Float = 0.1
    public var minLearningRate: Float = 0
    public var warmupEpochs: Float?
    public var weightDecay: Float = 1e-4
    public var clip: Float = 0.1
    /// The epoch from which the rate is a tenth (nil: two thirds of the way, as DETR's 200 of 300).
    public var drop: Int?
    /// DETR's loss weights and the no-object weight.
    public var noObjectWeight: Float = 0.1
    public var autocast: DType?
    public var seed: UInt64 = 0

    public init() {}

    public var peakLearningRate: Float {
        get { learningRate }
        set { learningRate = newValue }
    }
    public var effectiveWarmupEpochs: Float { warmupEpochs ?? 0 }
    public static let warmupDefault = "none"
    public var gradientClip: Float { clip }
    public var learningRateDrop: Int? { drop ?? max(1, epochs * 2 / 3) }
    /// Boxes move with every flip or crop: detection trains on the images as they are.
    public var augmentation: Augmentation { .none }
    public var ownProblems: [String] {
        var problems: [String] = []
        if !(backboneLearningRateScale >= 0 && backboneLearningRateScale <= 10) {
            problems.append("{backboneLearningRateScale} must be in [0, 10], got \(backboneLearningRateScale)")
        }
        if !(clip >= 0 && clip.isFinite) { problems.append("{clip} must be zero or more, got \(clip)") }
        if let drop, drop < 1 { problems.append("{drop} must be at least 1, got \(drop)") }
        if !(noObjectWeight > 0 && noObjectWeight <= 1) { problems.append("{noObjectWeight} must be in (0, 1], got \(noObjectWeight)") }
        if effectiveWarmupEpochs != 0 { problems.append("{warmupEpochs}: DETR's schedule has no warm-up, got \(effectiveWarmupEpochs)") }
        return problems
    }
}

/// One finished epoch of DETR training, as written to `metrics.jsonl`.
public struct DetectionRecord: TrainingRecord {
    public static let kind = "train-detection"
    public var epoch: Int  // 1-based
    /// Mean total loss over the epoch's steps (every decoder layer's terms, weighted), and the last layer's terms.
    public var loss: Double
    public var crossEntropy: Double
    public var l1: Double
    public var giou: Double
    /// COCO AP and AP50 on the validation images, when the run has them.
    public var ap: Double?
    public var ap50: Double?
    public var learningRate: Double
    public var imagesPerSecond: Double
    public var seconds: Double
    public var precision: String?

    enum CodingKeys: String, CodingKey {
        case epoch, loss, l1, giou, ap, ap50, seconds, precision
        case crossEntropy = "loss_ce", learningRate = "lr", imagesPerSecond = "images_per_second"
    }

    public var summary: String {
        String(format: "loss %.4f (ce %.4f, L1 %.4f, GIoU %.4f)", loss, crossEntropy, l1, giou)
            + (ap.map { String(format: ", AP %.2f%%", $0 * 100) } ?? "") + (ap50.map { String(format: ", AP50 %.2f%%", $0 * 100) } ?? "")
    }
}

/// Trains DETR (`DETR`, `DETRLoss`) on an annotated set with the run loop: AdamW with the backbone's own rate, the
/// set loss on every decoder layer, COCO AP on the validation set after each epoch, the model saved as a Hugging
/// Face folder (`vit detect` and transformers read it).
public final class DetectionTrainer: Training<DetectionRecord> {
    public let model: DETR
    public let options: DetectionOptions
    public let data: DetectionSet
    public let validation: DetectionSet?
    let criterion: DETRLoss

    public init(model: DETR, options: DetectionOptions, data: DetectionSet, validation: DetectionSet?, folder: URL) throws {
        try options.validate()
        guard data.classNames.count == model.config.classCount else {
            throw TrainingError.badOptions("the model has \(model.config.classCount) classes, the data \(data.classNames.count)")
        }
        self.model = model
        self.options = options
        self.data = data
        self.validation = validation
        var criterion = DETRLoss()
        criterion.noObjectWeight = options.noObjectWeight
        self.criterion = criterion
        // Decay on every trained weight and bias (DETR's AdamW decays all); the backbone at its own rate.
        let backbone = Set(model.backbone.parameters().map { ObjectIdentifier($0) })
        let trained = model.parameters().filter(\.requiresGrad)
        let groups = [
            ParameterGroup(parameters: trained.filter { !backbone.contains(ObjectIdentifier($0)) }, weightDecay: options.weightDecay),
            ParameterGroup(
                parameters: trained.filter { backbone.contains(ObjectIdentifier($0)) }, weightDecay: options.weightDecay,
                learningRateScale: options.backboneLearningRateScale)
        ].filter { !$0.parameters.isEmpty }
        let optimizer = AdamW(groups, learningRate: options.learningRate)
        try super.init(
            recipe: options, images: data.images, mean: model.config.mean, std: model.config.std, folder: folder, optimizer: optimizer,
            salt: 0xDE7E_C7, checkpointKey: Self.checkpointKey)
    }

    static let checkpointKey = "swiftvit_detection"

    /// What `checkpoint.safetensors` holds besides tensors.
    typealias SavedRun = SavedDataRun<DetectionOptions, DetectionRecord, DETRConfig>

    /// The digest of the images and their objects: a resumed run must see the same.
    static func digest(_ data: DetectionSet) -> String {
        Trainer.digest(
            data.images.sources
                + data.targets.map { t in
                    zip(t.labels, t.boxes).map { "\($0.0):\($0.1.cx),\($0.1.cy),\($0.1.w),\($0.1.h)" }.joined(separator: ";")
                })
    }

    /// Continues the run saved in `folder` on the same data (the epoch count may be raised with `epochs`).
    public static func resume(
        folder: URL, data: DetectionSet, validation: DetectionSet?, epochs: Int? = nil, precision: Precision? = nil
    ) throws -> DetectionTrainer {
        let (url, saved, groups) = try RunCheckpoint.read(
            in: folder, key: checkpointKey, groups: ["model", "optimizer"], as: SavedRun.self, run: "detection training",
            writer: "vit train --task detection")
        let options = try saved.resumedOptions(
            url: url, digest: digest(data), count: data.images.count, kind: "annotated images", epochs: epochs, precision: precision)
        do {
            let model = try Init.withoutDrawing { try DETR(saved.config) }
            try model.load(stateDict: groups["model"] ?? [:])
            let trainer = try DetectionTrainer(model: model, options: options, data: data, validation: validation, folder: folder)
            try trainer.restore(saved.state, optimizerState: groups["optimizer"] ?? [:], from: url)
            return trainer
        } catch let error as TrainingError {
            throw error
        } catch {
            throw TrainingError.badCheckpoint(url, "\(error)")
        }
    }

    override func willRun() { model.train() }

    /// The set loss of a batch (every image of one size: no padding, the mask all true).
    override func loss(on batch: TrainingBatch) throws -> StepLoss {
        let (b, h, w) = (batch.images.shape[0], batch.images.shape[2], batch.images.shape[3])
        let mask = [[[Bool]]](repeating: [[Bool]](repeating: [Bool](repeating: true, count: w), count: h), count: b)
        let output = Autocast.run(options.precision.dtype) { model(batch.images, mask: mask) }
        let castOutput = DETROutput(
            layers: output.layers.map { ($0.logits.cast(to: .float32), $0.boxes.cast(to: .float32)) },
            lastHiddenState: output.lastHiddenState, encoderLastHiddenState: output.encoderLastHiddenState)
        let (total, layers) = criterion(castOutput, targets: batch.members.map { data.targets[$0] })
        let value = total.item()
        let last = layers[layers.count - 1]
        return StepLoss(
            total: total, checked: [value],
            sums: [
                "loss": Double(value), "ce": Double(last.crossEntropy.item()), "l1": Double(last.l1.item()),
                "giou": Double(last.giou.item())
            ])
    }

    override func runningAverages() -> [(name: String, value: Double)] {
        [("loss", (state.sums["loss"] ?? 0) / Double(max(state.batch, 1)))]
    }

    override func record(of epoch: EpochTotals) throws -> DetectionRecord {
        let evaluation = validation.map { evaluate(on: $0) }
        func mean(_ name: String) -> Double { (epoch.sums[name] ?? 0) / Double(epoch.steps) }
        return DetectionRecord(
            epoch: epoch.epoch, loss: mean("loss"), crossEntropy: mean("ce"), l1: mean("l1"), giou: mean("giou"),
            ap: evaluation?.stats[0], ap50: evaluation?.stats[1], learningRate: epoch.learningRate,
            imagesPerSecond: epoch.imagesPerSecond, seconds: epoch.seconds, precision: epoch.precision)
    }

    /// COCO's numbers for the model on `set` (every query's best class, no threshold), in evaluation mode.
    public func evaluate(on set: DetectionSet, batchSize: Int = 16) -> COCOEvaluation {
        model.eval()
        defer { model.train() }
        var found: [COCOResults.Detection] = []
        let (h, w) = (set.images.height, set.images.width)
        for start in stride(from: 0, to: set.images.count, by: batchSize) {
            let indices = Array(start..<min(start + batchSize, set.images.count))
            let images = TrainingLoader.normalisedBatch(
                indices.map { set.images.image($0) }, mean: model.config.mean, std: model.config.std)
            let mask = [[[Bool]]](repeating: [[Bool]](repeating: [Bool](repeating: true, count: w), count: h), count: indices.count)
            let detections = Autograd.withNoGrad {
                Autocast.run(options.precision.dtype) { model(images, mask: mask) }.detections(
                    sizes: Array(repeating: (h, w), count: indices.count), threshold: 0)
            }
            for (n, index) in indices.enumerated() {
                for d in detections[n] {
                    found.append(
                        .init(
                            imageId: set.imageIds[index], categoryId: set.categoryIds[d.label],
                            bbox: [Double(d.box.x0), Double(d.box.y0), Double(d.box.x1 - d.box.x0), Double(d.box.y1 - d.box.y0)],
                            score: Double(d.score)))
                }
            }
        }
        return COCOEvaluation(annotations: set.annotations, results: COCOResults(found))
    }

    override func weightsToCheck() -> [(name: String, tensor: Tensor)] { model.namedParameters() }

    override func saveModel(endOfEpoch: Bool) throws { try DETRCheckpoint.save(model, to: folder) }

    override func curves() -> RGBImage? {
        let epochs = state.history.map(\.epoch), loss = [("train", state.history.map(\.loss))]
        guard state.history.contains(where: { $0.ap != nil }) else { return TrainingFigures.lossCurves(epochs: epochs, series: loss) }
        return TrainingFigures.curves(
            epochs: epochs, loss: loss,
            accuracy: [("val AP", state.history.map { $0.ap ?? .nan }), ("val AP50", state.history.map { $0.ap50 ?? .nan })],
            accuracyLabel: "COCO AP")
    }

    override func checkpointTensors() -> [String: [String: Tensor]] { ["model": model.stateDict(), "optimizer": optimizer.state()] }

    override func savedRun(state: RunState<DetectionRecord>) -> any Encodable {
        SavedRun(options: options, state: state, config: model.config, dataCount: data.images.count, dataDigest: Self.digest(data))
    }
}
