import ArgumentParser
import Datasets
import Foundation
import Tensors
import Training
import ViT

/// Self-supervised pre-training (MAE or HPM) on unlabelled images.
struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pre-train a ViT as a masked autoencoder (MAE) or with Hard Patches Mining (HPM) on unlabelled images.",
        discussion: """
            --data takes any folder (or .tar.gz) of images at any depth, or WebDataset shards (a folder of .tar files, \
            or a list such as data/train-{000000..000099}.tar); labels are ignored. A labelled data set that \
            vit train reads (an image folder with train/ and test/, CIFAR binaries, IDX files) gives its training part \
            only. Sets too large to hold decoded are streamed (--data-reading). Images are resized once, when loaded, to --image-size (default: the data's own size when all images \
            share one square size, else the preset's). The recipe is MAE's: AdamW (betas 0.9, 0.95, weight decay \
            0.05), lr = --blr x batch / 256 with warm-up then cosine, random resized crops (scale 0.2-1) and flips. \
            After every epoch OUTPUT holds the model (model.safetensors + config.json: the whole autoencoder in \
            MAE's names; vit train --init OUTPUT fine-tunes its encoder), checkpoint.safetensors (to --resume from), \
            metrics.jsonl, curves.png and reconstruction.png (also kept per epoch in reconstructions/). Ctrl-C or \
            SIGTERM saves a checkpoint and exits (130 / 143); run again with --resume to continue exactly.
            """
    )
    private static let defaults = PretrainingOptions()

    @Option(help: "Images (see above).") var data: String
    @Option(help: "mae (random masks) or hpm (masks of predicted-hard patches, easy to hard; a loss predictor and an EMA teacher).")
    var method: PretrainingMethod = .mae
    @Option(help: "Architecture preset of the encoder.") var arch = "vit_cifar_patch4_32"
    @Option(help: "Input size in pixels; images are resized to it when loaded (default: the data's size when uniform, else the preset's).")
    var imageSize: Int?
    @Option(help: "Override the preset's patch size.") var patchSize: Int?
    @Option(help: "Override the preset's token width.") var width: Int?
    @Option(help: "Override the preset's number of blocks.") var depth: Int?
    @Option(help: "Override the preset's number of attention heads.") var heads: Int?
    @Option(help: "Override the preset's MLP width / token width.") var mlpRatio: Float?
    @Option(help: "Decoder token width.") var decoderWidth = 128
    @Option(help: "Decoder blocks.") var decoderDepth = 2
    @Option(help: "Decoder attention heads.") var decoderHeads = 4
    @Option(help: "Fraction of the patches removed.") var maskRatio: Float = 0.75
    @Flag(help: "Reconstruct each patch normalised by its own mean and variance (MAE's norm_pix_loss).") var normPixLoss = false
    @Option(help: "Base learning rate: the peak rate is blr x batch size / 256 (MAE's rule), unless --lr sets it.")
    var blr = defaults.baseLearningRate
    @OptionGroup var runOptions: RunOptions<PretrainingOptions>
    @OptionGroup var dataReading: DataReadingOptions
    @OptionGroup var imageLimit: ImageLimitOptions

    func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ValidationError(message) } }
        if let imageSize { try check(imageSize >= 1, "--image-size must be at least 1") }
        try check(maskRatio >= 0 && maskRatio < 1, "--mask-ratio must be in [0, 1), got \(maskRatio)")
        try check(
            decoderWidth >= 1 && decoderDepth >= 0 && decoderHeads >= 1,
            "--decoder-width, --decoder-heads must be at least 1, --decoder-depth 0 or more")
    }

    func run() throws {
        imageLimit.apply()
        try runOptions.train(files: "model.safetensors, config.json, metrics.jsonl, curves.png, reconstruction.png") {
            runOptions.resume ? try resumed($0) : try newRun($0)
        }
    }

    func loadImages(sizing: ImageSizing) throws -> any TrainingImages {
        printError("reading \(data) ...")
        let started = Date()
        guard let images = try dataReading.reading.load(data, parts: [.train], sizing: sizing, needs: .nothing)[.train]?.images else {
            throw CommandFailure("\(data) has no training images")
        }
        for failure in (images as? ImageDataset)?.failures ?? [] { printError("skipped: \(failure)") }
        printError(
            "\(images.count) images of \(images.width)x\(images.height), \(images.readingSummary) (\(String(format: "%.1f", Date().timeIntervalSince(started))) s)"
        )
        return images
    }

    func newRun(_ folder: URL) throws -> Pretrainer {
        try runOptions.checkNewRun()
        var options = PretrainingOptions()
        options.method = method
        options.baseLearningRate = blr
        options = try runOptions.recipe(options, flags: ["baseLearningRate": "--blr"])

        var encoder: ViTConfig
        do { encoder = try ViTConfig.preset(arch) } catch { throw CommandFailure("--arch: \(error)") }
        if let patchSize { encoder.patchSize = patchSize }
        if let width { encoder.width = width }
        if let depth { encoder.depth = depth }
        if let heads { encoder.heads = heads }
        if let mlpRatio { encoder.mlpRatio = mlpRatio }
        let sizing: ImageSizing = imageSize.map { .size($0) } ?? .nativeIfUniform(fallback: encoder.imageSize)
        let images = try loadImages(sizing: sizing)
        guard images.width == images.height else {
            throw CommandFailure("pre-training needs square images, the data has \(images.width)x\(images.height): give --image-size")
        }
        encoder.imageSize = images.width
        encoder.data.inputSize = [3, images.width, images.width]
        encoder.data.cropPct = 1
        (encoder.data.mean, encoder.data.std) = try images.channelStatistics()
        var config = MAEConfig(encoder: encoder)
        config.decoderWidth = decoderWidth
        config.decoderDepth = decoderDepth
        config.decoderHeads = decoderHeads
        config.maskRatio = maskRatio
        config.normPixLoss = normPixLoss
        config.lossPredictor = method == .hpm
        do { try config.validate() } catch { throw CommandFailure("the architecture at \(images.width) px: \(error)") }
        GlobalRandom.seed(options.seed)
        let model = try MaskedAutoencoder(config)
        let pretrainer = try Pretrainer(model: model, options: options, data: images, folder: folder)
        let encoderCount = model.encoderStateDict().filter { $0.key != "pos_embed" }.values.reduce(0) { $0 + $1.count }
        printError(
            "\(method.rawValue) at \(images.width) px: encoder \(encoderCount) parameters (sees \(config.keptPatches) of \(config.encoder.patchCount) patches), all \(model.parameterCount); \(options.epochs) epochs of \(pretrainer.stepsPerEpoch) steps, lr \(String(format: "%.2e", options.peakLearningRate))"
        )
        return pretrainer
    }

    func resumed(_ folder: URL) throws -> Pretrainer {
        let checkpoint = folder.appendingPathComponent("checkpoint.safetensors")
        guard FileManager.default.fileExists(atPath: checkpoint.path) else {
            throw CommandFailure("\(checkpoint.path): no such file: no pre-training run to resume in \(runOptions.output)")
        }
        let saved = try Pretrainer.savedRun(in: folder)
        let pretrainer = try Pretrainer.resume(
            folder: folder, data: try loadImages(sizing: .size(saved.config.encoder.imageSize)), epochs: runOptions.epochs,
            precision: runOptions.precision)
        printError("resuming at epoch \(pretrainer.state.epoch + 1), batch \(pretrainer.state.batch + 1) of \(pretrainer.stepsPerEpoch)")
        ResumedRun.notePrecisionChange(from: saved.options.precision, to: pretrainer.options.precision)
        ResumedRun.noteUnusedOptions(used: [], changeable: ["--epochs", "--precision"])
        return pretrainer
    }
}

extension PretrainingMethod: ExpressibleByArgument {}
