import Checkpoints
import Datasets
import Foundation
import Images
import NN
import Plots
import Tensors
import ViT

/// Self-supervised pre-training of a masked autoencoder on unlabelled images: MAE (random masks), or Hard Patches
/// Mining (masks from an EMA teacher's predicted losses, and the ranking loss of the loss predictor).
///
/// The output folder holds the model (`model.safetensors` + `config.json`: the whole autoencoder in the official
/// names; `vit train --init` takes its encoder), `checkpoint.safetensors` (weights, teacher, optimiser moments and
/// the `PretrainingState`), `metrics.jsonl`, `curves.png` and each epoch's reconstruction figure
/// (`reconstructions/epoch-N.png`, the latest also as `reconstruction.png`). `resume` continues exactly.
public final class Pretrainer: Training<PretrainingRecord> {
    public let model: MaskedAutoencoder
    /// HPM's teacher: an exponential moving average of `model`, predicting losses on whole images.
    public let teacher: MaskedAutoencoder?
    public let options: PretrainingOptions
    public var data: any TrainingImages { images }
    /// The images drawn in each epoch's reconstruction figure, with their fixed mask: eight images spread over the
    /// data (a stream's first eight), with one mask drawn once, the same in every epoch's figure.
    private lazy var sample: (images: Tensor, mask: PatchMask)? = {
        guard let shown = try? data.figureImages(8), !shown.isEmpty else { return nil }
        let count = shown.count
        let images = TrainingLoader.normalisedBatch(shown, mean: model.config.encoder.data.mean, std: model.config.encoder.data.std)
        var maskRandom = SeededGenerator(seed: options.seed ^ 0xF16)
        let mask = PatchMask.random(
            batch: count, patches: model.config.encoder.patchCount, keep: model.config.keptPatches, using: &maskRandom)
        return (images, mask)
    }()

    public init(model: MaskedAutoencoder, options: PretrainingOptions, data: any TrainingImages, folder: URL) throws {
        try options.validate()
        let size = model.config.encoder.imageSize
        guard data.width == size, data.height == size else {
            throw TrainingError.badOptions("the model takes \(size)x\(size) images, the data has \(data.width)x\(data.height)")
        }
        guard (options.method == .hpm) == model.config.lossPredictor else {
            throw TrainingError.badOptions(
                options.method == .hpm ? "HPM needs a model with a loss predictor" : "MAE pre-training of a model with a loss predictor")
        }
        self.model = model
        self.options = options
        if options.method == .hpm {
            let teacher = try Init.withoutDrawing { try MaskedAutoencoder(model.config) }
            try teacher.load(stateDict: model.stateDict().mapValues { $0.copy() })
            teacher.eval()
            self.teacher = teacher
        } else {
            teacher = nil
        }
        let optimizer = AdamW(
            ParameterGroup.standard(model, weightDecay: options.weightDecay, noDecayNames: []),
            learningRate: options.peakLearningRate, beta1: options.beta1, beta2: options.beta2)
        try super.init(
            recipe: options, images: data, mean: model.config.encoder.data.mean, std: model.config.encoder.data.std, folder: folder,
            optimizer: optimizer,
            salt: 0x3A5C_ED00, checkpointKey: Self.checkpointKey)
    }

    static let checkpointKey = "swiftvit_pretraining"

    /// Continues the run saved in `folder` on the same images (the epoch count may be raised with `epochs`);
    /// `precision` changes the dtype of the matrix products from here on, as `Trainer.resume`'s does.
    public static func resume(folder: URL, data: any TrainingImages, epochs: Int? = nil, precision: Precision? = nil) throws -> Pretrainer {
        let (url, saved, groups) = try readCheckpoint(in: folder)
        let options = try saved.resumedOptions(
            url: url, digest: Trainer.digest(data.identity), count: data.count, kind: "images", epochs: epochs, precision: precision)
        let model: MaskedAutoencoder
        do { model = try Init.withoutDrawing { try MaskedAutoencoder(saved.config) } } catch {
            throw TrainingError.badCheckpoint(url, "the saved configuration: \(error)")
        }
        let pretrainer: Pretrainer
        do {
            try model.load(stateDict: groups["model"]!)
            pretrainer = try Pretrainer(model: model, options: options, data: data, folder: folder)
            try pretrainer.restore(saved.state, optimizerState: groups["optimizer"]!, from: url)
            try pretrainer.teacher?.load(stateDict: groups["teacher"]!)
        } catch let error as TrainingError {
            throw error
        } catch {
            throw TrainingError.badCheckpoint(url, "\(error)")
        }
        return pretrainer
    }

    /// The recipe and the autoencoder's configuration the run in `folder` was saved with, without building its model:
    /// the checkpoint alone, so a run resumes without its `model.safetensors`.
    public static func savedRun(in folder: URL) throws -> (options: PretrainingOptions, config: MAEConfig) {
        let saved = try readCheckpoint(in: folder).1
        return (saved.options, saved.config)
    }

    /// The state and the tensors of `folder/checkpoint.safetensors`, grouped by prefix (model, teacher, optimizer).
    private static func readCheckpoint(in folder: URL) throws -> (URL, SavedRun, [String: [String: Tensor]]) {
        try RunCheckpoint.read(
            in: folder, key: checkpointKey, groups: ["model", "teacher", "optimizer"], as: SavedRun.self,
            run: "pre-training", writer: "vit pretrain")
    }

    /// What `checkpoint.safetensors` holds besides tensors.
    typealias SavedRun = SavedDataRun<PretrainingOptions, PretrainingRecord, MAEConfig>

    override func willRun() { model.train() }

    /// The masks (random, or HPM's from the teacher's predicted losses), the reconstruction loss, and HPM's ranking
    /// loss, on images [B, C, H, W].
    override func loss(on batch: TrainingBatch) throws -> StepLoss {
        let images = batch.images
        let b = images.shape[0], n = model.config.encoder.patchCount, keep = model.config.keptPatches
        let mask: PatchMask
        if let teacher {
            // The teacher predicts every patch's loss on the whole image; the hardest share of the masked patches
            // follows those predictions (`engine_pretrain.py`: under no_grad, before the student's forward).
            let predicted = Autograd.withNoGrad {
                Autocast.run(options.precision.dtype) { teacher.predictedLossOnWholeImages(images) }
            }
            mask = HardPatchesMining.mask(
                predictedLoss: predicted, keep: keep, epoch: state.epoch, epochs: options.epochs, using: &random.generator)
        } else if let share = dataParallel.map({ DataShare(rank: $0.rank, ranks: $0.ranks) }) {
            // The noise of the whole global batch, as one process draws it, and this rank's rows of it: N ranks mask
            // their images as one process would.
            let noise = Tensor.uniform([loop.batchSize, n], using: &random.generator).toArray()
            let first = share.rows(of: loop.batchSize).lowerBound
            mask = PatchMask(noise: Tensor(Array(noise[(first * n)..<((first + b) * n)]), shape: [b, n]), keep: keep)
        } else {
            mask = PatchMask.random(batch: b, patches: n, keep: keep, using: &random.generator)
        }
        let outputs = Autocast.run(options.precision.dtype) { model.forward(images, mask: mask) }
        let reconstruction = model.reconstructionLoss(images, prediction: outputs.prediction.cast(to: .float32), mask: mask)
        guard let predictedLoss = outputs.predictedLoss?.cast(to: .float32) else {
            let value = reconstruction.loss.item()
            return StepLoss(total: reconstruction.loss, checked: [value], sums: ["loss": Double(value)])
        }
        // HPM: the predictor ranks the removed patches as their true (detached) losses rank them; its gradient
        // reaches the shared encoder, decoder embedding and mask token too.
        let predicted = predictedLoss.gather(axis: 1, mask.removed)  // [B, N - K]
        let target = reconstruction.perPatch.gather(axis: 1, mask.removed)  // [B, N - K]
        let rankingLoss = HardPatchesMining.rankingLoss(predicted: predicted, target: target)
        let (ranking, value) = (rankingLoss.item(), reconstruction.loss.item())
        return StepLoss(
            total: reconstruction.loss + rankingLoss, checked: [value, ranking],
            sums: ["loss": Double(value), "ranking_loss": Double(ranking)])
    }

    /// HPM's teacher: timm's ModelEma, updated after every step with the epoch's decay.
    override func afterUpdate() {
        guard let teacher else { return }
        let decay = HardPatchesMining.teacherDecay(epoch: state.epoch)
        for (t, p) in zip(teacher.parameters(), model.parameters()) { t.device.backend.lerp(t, toward: p, decay: decay) }
    }

    override func runningAverages() -> [(name: String, value: Double)] {
        let steps = Double(max(state.batch, 1))
        return [("loss", (state.sums["loss"] ?? 0) / steps)] + (teacher == nil ? [] : [("rank", (state.sums["ranking_loss"] ?? 0) / steps)])
    }

    override func record(of epoch: EpochTotals) throws -> PretrainingRecord {
        PretrainingRecord(
            epoch: epoch.epoch, loss: epoch.perStep("loss"), rankingLoss: teacher == nil ? nil : epoch.perStep("ranking_loss"),
            learningRate: epoch.learningRate, imagesPerSecond: epoch.imagesPerSecond, seconds: epoch.seconds,
            precision: epoch.precision)
    }

    override func weightsToCheck() -> [(name: String, tensor: Tensor)] {
        model.namedParameters() + (teacher?.namedParameters().map { ("teacher.\($0.name)", $0.tensor) } ?? [])
    }

    /// The model folder and, at an epoch's end, the reconstruction figure.
    override func saveModel(endOfEpoch: Bool) throws {
        try MAECheckpoint.save(model, to: folder)
        guard endOfEpoch, let sample else { return }
        let image = Autograd.withNoGrad {
            Self.reconstructionFigure(
                model: model, images: sample.images, mask: sample.mask,
                title: "\(options.method.rawValue.uppercased()), epoch \(state.epoch)")
        }
        let folderURL = folder.appendingPathComponent("reconstructions")
        try FileManager.default.createDirectory(at: folderURL, withIntermediateDirectories: true)
        try PNG.write(image, to: folderURL.appendingPathComponent(String(format: "epoch-%03d.png", state.epoch)))
        try PNG.write(image, to: folder.appendingPathComponent("reconstruction.png"))
    }

    override func curves() -> RGBImage? {
        var series = [("reconstruction", state.history.map(\.loss))]
        if teacher != nil { series.append(("ranking", state.history.map { $0.rankingLoss ?? .nan })) }
        return TrainingFigures.lossCurves(epochs: state.history.map(\.epoch), series: series, title: "\(options.method.rawValue) loss")
    }

    override func checkpointTensors() -> [String: [String: Tensor]] {
        ["model": model.stateDict(), "teacher": teacher?.stateDict() ?? [:], "optimizer": optimizer.state()]
    }

    override func savedRun(state: RunState<PretrainingRecord>) -> any Encodable {
        SavedRun(options: options, state: state, config: model.config, dataCount: data.count, dataDigest: Trainer.digest(data.identity))
    }

    /// One row per image: the original, what the encoder saw (removed patches grey), the reconstruction with the
    /// visible patches pasted back, and for a model with a loss predictor its predicted per-patch loss beside the
    /// true one (on the removed patches; kept patches show the lowest colour). Images are un-normalised with the
    /// model's mean and std; with `normPixLoss` each patch's prediction is put back on the patch's own mean and
    /// variance, as MAE's visualisation does.
    public static func reconstructionFigure(model: MaskedAutoencoder, images: Tensor, mask: PatchMask, title: String) -> RGBImage {
        let config = model.config, g = config.encoder.gridSize, p = config.encoder.patchSize
        let outputs = model.forward(images, mask: mask)
        var prediction = outputs.prediction  // [B, N, P·P·C]
        let patches = model.patchify(images)  // [B, N, P·P·C]
        if config.normPixLoss {
            let values = Float(config.patchValues)
            let mean = patches.mean(axis: -1, keepDim: true)
            let variance = (patches - mean).square().sum(axis: -1, keepDim: true) / (values - 1)
            prediction = prediction * (variance + 1e-6).sqrt() + mean
        }
        let removed = mask.tensor.unsqueeze(-1)  // [B, N, 1]
        let pasted = model.unpatchify(patches * (1 - removed) + prediction * removed)  // [B, C, H, W]
        let masked = model.unpatchify(patches * (1 - removed))
        let perPatch = model.reconstructionLoss(images, prediction: outputs.prediction, mask: mask).perPatch.toArray()
        let predictedLoss = outputs.predictedLoss?.toArray()
        let (mean, std) = (config.encoder.data.mean, config.encoder.data.std)
        let scale = max(1, 96 / config.encoder.imageSize)
        let side = config.encoder.imageSize * scale
        var rows: [[(caption: String, image: RGBImage)]] = []
        let n = g * g
        for i in 0..<images.shape[0] {
            func picture(_ batch: Tensor, grey: Bool) -> RGBImage {
                var image = RGBImage(normalised: batch.slice(axis: 0, start: i, length: 1), mean: mean, std: std)
                if grey {  // removed patches shown grey, as MAE's figures do
                    for patch in mask.removed[i] {
                        let (py, px) = (patch / g, patch % g)
                        for y in 0..<p {
                            for x in 0..<p { for c in 0..<3 { image.pixels[((py * p + y) * image.width + px * p + x) * 3 + c] = 128 } }
                        }
                    }
                }
                return Figures.enlarged(image, scale: scale)
            }
            var row = [
                (caption: "original", image: picture(images, grey: false)), (caption: "masked", image: picture(masked, grey: true)),
                (caption: "rebuilt", image: picture(pasted, grey: false))
            ]
            if let predictedLoss {
                let removedSet = Set(mask.removed[i])
                func map(_ values: [Float]) -> RGBImage {
                    let own = Array(values[(i * n)..<((i + 1) * n)])
                    let low = mask.removed[i].map { own[$0] }.min() ?? 0
                    return Figures.cellMap((0..<n).map { removedSet.contains($0) ? own[$0] : low }, grid: g, size: side)
                }
                row.append((caption: "predicted", image: map(predictedLoss)))
                row.append((caption: "true", image: map(perPatch)))
            }
            rows.append(row)
        }
        return Figures.reconstructions(rows, title: title, lossMaps: predictedLoss != nil)
    }
}
