import ArgumentParser
import Datasets
import Dispatch
import Foundation
import Tensors
import Training
import ViT

/// Trains a ViT classifier from scratch on a labelled image set.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a ViT classifier on an image folder (or .tar.gz), CIFAR binaries or IDX files.",
        discussion: """
        --data takes root/<class>/<image> or root/{train,test}/<class>/<image> (a directory or a .tar.gz of one), \
        a folder of CIFAR-10/100 .bin files, or a folder of IDX files (MNIST, Fashion-MNIST). Validation uses \
        --val-split of the training images if given, else the test part when there is one. After every epoch \
        OUT holds the model (model.safetensors + config.json, readable by vit predict and vit eval), \
        checkpoint.safetensors (to --resume from), metrics.jsonl and curves.png; each epoch's metrics are also \
        printed as a JSON line. Ctrl-C saves a checkpoint and exits; run again with --resume to continue exactly.
        """
    )

    @Option(help: "Training data (see above).") var data: String
    @Option(name: .customLong("val-split"), help: "Hold out this fraction of each class for validation.") var valSplit: Double = 0
    @Option(help: "Architecture preset; image size and classes follow the data.") var preset = "vit_cifar_patch4_32"
    @Option(name: .customLong("patch-size"), help: "Override the preset's patch size.") var patchSize: Int?
    @Option(help: "Override the preset's token width.") var width: Int?
    @Option(help: "Override the preset's number of blocks.") var depth: Int?
    @Option(help: "Override the preset's attention heads.") var heads: Int?
    @Option(name: .customLong("mlp-ratio"), help: "Override the preset's MLP width / token width.") var mlpRatio: Float?
    @Option(name: [.short, .customLong("out")], help: "Output folder.") var out: String
    @Flag(help: "Continue the run saved in --out (same recipe; --epochs may raise the epoch count).") var resume = false

    @Option(help: "Epochs.") var epochs: Int?
    @Option(name: .customLong("batch-size"), help: "Images per step.") var batchSize = 128
    @Option(help: "Peak learning rate (AdamW).") var lr: Float = 1e-3
    @Option(name: .customLong("min-lr"), help: "Learning rate at the end of the cosine decay.") var minLR: Float = 1e-5
    @Option(help: "Warm-up epochs (linear from 0).") var warmup: Float = 3
    @Option(name: .customLong("weight-decay"), help: "AdamW weight decay (not on biases, norms, tokens, position embeddings).")
    var weightDecay: Float = 0.05
    @Option(name: .customLong("label-smoothing"), help: "Label smoothing.") var labelSmoothing: Float = 0.1
    @Option(name: .customLong("clip-grad"), help: "Clip the global gradient norm to this (0: off).") var clipGrad: Float = 0
    @Option(help: "EMA decay of the weights, e.g. 0.999 (off unless given); evaluation and the saved model use the EMA.")
    var ema: Float?
    @Option(name: .customLong("drop-path"), help: "Stochastic depth rate of the last block.") var dropPath: Float = 0
    @Option(help: "Dropout after the MLP and projections.") var dropout: Float = 0
    @Option(name: .customLong("crop-padding"), help: "Random crop after this much zero padding (0: off).") var cropPadding = 4
    @Flag(inversion: .prefixedNo, help: "Random horizontal flips.") var flip = true
    @Option(help: "RandAugment N,M: N operations at magnitude M of 10 (e.g. 2,9).") var randaugment: String?
    @Option(name: .customLong("random-erasing"), help: "Probability of random erasing per image.") var randomErasing: Float = 0
    @Option(help: "Mixup alpha (0: off).") var mixup: Float = 0
    @Option(help: "CutMix alpha (0: off).") var cutmix: Float = 0
    @Option(help: "Seed of the initialisation, data order, augmentation and drop path.") var seed: UInt64 = 0
    @Option(name: .customLong("max-steps"), help: "Stop (with a checkpoint to resume from) after this many steps.")
    var maxSteps: Int?

    func validate() throws {
        if let randaugment, Self.pair(randaugment) == nil { throw ValidationError("--randaugment takes N,M, e.g. 2,9") }
        if !(valSplit >= 0 && valSplit < 1) { throw ValidationError("--val-split must be in [0, 1)") }
    }

    static func pair(_ text: String) -> (Int, Float)? {
        let parts = text.split(separator: ",")
        guard parts.count == 2, let n = Int(parts[0]), let m = Float(parts[1]), n >= 0, m >= 0 else { return nil }
        return (n, m)
    }

    func run() throws {
        let dataURL = URL(fileURLWithPath: data)
        let folder = URL(fileURLWithPath: out)
        printError("reading \(data) ...")
        let started = Date()
        let parts = try ImageDataset.load(dataURL, parts: valSplit > 0 ? [.train] : [.train, .test])
        guard var trainSet = parts[.train] else { throw ValidationError("\(data) has no training images") }
        var validationSet = parts[.test]
        if valSplit > 0 {
            (trainSet, validationSet) = trainSet.stratifiedSplit(validationFraction: valSplit, seed: seed)
        }
        for failure in trainSet.failures + (validationSet?.failures ?? []) { printError("skipped: \(failure)") }
        printError("\(trainSet.count) training and \(validationSet?.count ?? 0) validation images of \(trainSet.width)x\(trainSet.height), \(trainSet.classNames.count) classes (\(String(format: "%.1f", Date().timeIntervalSince(started))) s)")

        let trainer: Trainer
        if resume {
            trainer = try Trainer.resume(folder: folder, trainSet: trainSet, validationSet: validationSet, epochs: epochs)
            printError("resuming at epoch \(trainer.state.epoch + 1), batch \(trainer.state.batch + 1) of \(trainer.stepsPerEpoch)")
        } else {
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("checkpoint.safetensors").path) {
                throw ValidationError("\(out) already holds a training run: add --resume to continue it, or choose another --out")
            }
            trainer = try Trainer(model: try makeModel(for: trainSet), options: try recipe(), trainSet: trainSet,
                                  validationSet: validationSet, folder: folder)
            printError("\(preset) at \(trainSet.width)px: \(trainer.model.parameterCount) parameters, \(trainer.options.epochs) epochs of \(trainer.stepsPerEpoch) steps")
        }
        trainer.stepLimit = maxSteps
        let interrupt = Interrupt()
        trainer.shouldStop = { interrupt.requested }
        let batchSize = trainer.options.batchSize, totalEpochs = trainer.options.epochs
        var bar: ProgressBar?
        var lastLog = Date()
        trainer.onEvent = { event in
            switch event {
            case let .step(epoch, batch, batches, loss, accuracy, learningRate):
                if bar == nil {
                    printError("epoch \(epoch + 1)/\(totalEpochs)")
                    bar = ProgressBar(total: (batches - batch) * batchSize, unit: "img")
                }
                let note = String(format: "loss %.4f acc %.1f%% lr %.2e", loss, accuracy * 100, learningRate)
                bar?.advance(by: batchSize, note: note)
                // In a log (no terminal, no bar), a line every minute instead.
                if bar?.enabled == false && Date().timeIntervalSince(lastLog) >= 60 {
                    lastLog = Date()
                    printError("  batch \(batch + 1)/\(batches): \(note)")
                }
            case .evaluating:
                bar = nil
            case .epochFinished(let record):
                bar = nil
                var line = String(format: "epoch %d/%d: train loss %.4f acc %.2f%%", record.epoch, totalEpochs,
                                  record.trainLoss, record.trainAccuracy * 100)
                if let top1 = record.validationTop1, let top5 = record.validationTop5, let loss = record.validationLoss {
                    line += String(format: " | val loss %.4f top-1 %.2f%% top-5 %.2f%%", loss, top1 * 100, top5 * 100)
                }
                line += String(format: " | %.1f img/s, %.0f s", record.imagesPerSecond, record.seconds)
                printError(line)
                print(record.json())
                fflush(stdout)
            case .saved:
                break
            }
        }
        let outcome = try trainer.run()
        switch outcome {
        case .finished:
            printError("done: \(out) (model.safetensors, config.json, metrics.jsonl, curves.png)")
        case .stopped:
            printError("\nstopped at epoch \(trainer.state.epoch + 1), batch \(trainer.state.batch) of \(trainer.stepsPerEpoch); checkpoint saved: continue with --resume")
            if interrupt.requested { throw ExitCode(130) }
        }
    }

    /// The preset at the data's image size and class count, with the data's own normalisation.
    func makeModel(for data: ImageDataset) throws -> VisionTransformer {
        var config = try ViTConfig.preset(preset)
        if let patchSize { config.patchSize = patchSize }
        if let width { config.width = width }
        if let depth { config.depth = depth }
        if let heads { config.heads = heads }
        if let mlpRatio { config.mlpRatio = mlpRatio }
        guard data.width == data.height else { throw ValidationError("training needs square images, the data has \(data.width)x\(data.height)") }
        guard data.width % config.patchSize == 0 else {
            throw ValidationError("\(data.width)px images do not divide into \(config.patchSize)px patches of \(preset)")
        }
        config.imageSize = data.width
        config.data.inputSize = [3, data.width, data.width]
        config.data.cropPct = 1
        config.numClasses = data.classNames.count
        config.labels = data.classNames
        config.dropPath = dropPath
        config.dropout = dropout
        (config.data.mean, config.data.std) = data.channelStatistics()
        GlobalRandom.seed(seed)
        return try VisionTransformer(config)
    }

    func recipe() throws -> TrainingOptions {
        var options = TrainingOptions()
        options.epochs = epochs ?? options.epochs
        options.batchSize = batchSize
        options.learningRate = lr
        options.minLearningRate = minLR
        options.warmupEpochs = warmup
        options.weightDecay = weightDecay
        options.labelSmoothing = labelSmoothing
        options.gradientClip = clipGrad
        options.emaDecay = ema
        options.augmentation.cropPadding = cropPadding
        options.augmentation.horizontalFlip = flip
        if let (n, m) = randaugment.flatMap(Self.pair) {
            options.augmentation.randAugmentOps = n
            options.augmentation.randAugmentMagnitude = m
        }
        options.augmentation.randomErasing = randomErasing
        options.mixing = BatchMixing(mixupAlpha: mixup, cutmixAlpha: cutmix)
        options.seed = seed
        try options.validate()
        return options
    }
}

/// Ctrl-C: the first asks the trainer to save and stop after the current step; a second one exits at once.
final class Interrupt: @unchecked Sendable {
    private let source: DispatchSourceSignal
    private let lock = NSLock()
    private var count = 0

    init() {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [unowned self] in
            let n = lock.withLock { count += 1; return count }
            if n == 1 {
                printError("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit without saving)")
            } else {
                Foundation.exit(130)
            }
        }
        source.resume()
    }

    var requested: Bool { lock.withLock { count > 0 } }
}
