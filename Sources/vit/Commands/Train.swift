import ArgumentParser
import Datasets
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
            a folder of CIFAR-10/100 .bin files, or a folder of IDX files (MNIST, Fashion-MNIST). Images of any size \
            are resized once, when loaded, to --image-size (default: the data's own size when all images share one \
            square size, else the preset's). Validation is --val-split of the training images if given, else the \
            test part when there is one, else none: never the training images. After every epoch OUTPUT holds the \
            model (model.safetensors + config.json, readable by vit predict, vit eval and timm), \
            checkpoint.safetensors (to --resume from), metrics.jsonl and curves.png; each epoch's metrics are also \
            printed as a JSON line. Ctrl-C or SIGTERM saves a checkpoint and exits (130 / 143; a second one quits \
            without saving, never mid-write); run again with --resume to continue exactly (on the same validation \
            images). Before anything is allocated, one step's memory is estimated and a run \
            that cannot fit is refused.
            """
    )
    private static let defaults = TrainingOptions()

    @Option(help: "Training data (see above).") var data: String
    @Option(help: "Hold out this fraction of each class of the training images for validation (default: the data's test part, if any).")
    var valSplit: Double?
    @Option(help: "Architecture preset; the class count follows the data.") var arch = "vit_cifar_patch4_32"
    @Option(
        name: .customLong("init"),
        help:
            "Fine-tune: start from this checkpoint (any --model vit reads: timm, Hugging Face, .npz, .pth, a vit train run) instead of random weights; its architecture and normalisation are kept, position embeddings resampled to --image-size, the head replaced when the classes differ."
    )
    var initialCheckpoint: String?
    @Option(
        help:
            "Pooling: token (the class token) or avg (mean of the patch tokens, normalised by fc_norm, as MAE fine-tunes; new when --init had token pooling); default: the checkpoint's or the preset's."
    )
    var pooling: ViTConfig.Pooling?
    @Option(help: "Layer-wise learning-rate decay, e.g. 0.75 (MAE fine-tuning): block k learns at decay^(depth - k) of the rate.")
    var layerDecay: Float?
    @Flag(help: "Train the head only (a linear probe of the --init features).") var linearProbe = false
    @Option(help: "A new head's initialisation: zeros (timm) or trunc-normal (std 2e-5, as MAE fine-tunes).")
    var headInit: FineTuning.HeadInit = .zeros
    @Option(help: "Optimizer: adamw, or sgd with --momentum (the ViT paper's fine-tuning).") var optimizer: OptimizerKind = .adamw
    @Option(help: "SGD momentum.") var momentum: Float = 0.9
    @Option(help: "Accumulate the gradients of this many batches per optimiser step (an effective batch of --batch-size x N).")
    var accumulate: Int = 1
    @Option(
        help:
            "Input size in pixels; images are resized to it when loaded (default: the data's size when all images share one square size, else the preset's)."
    )
    var imageSize: Int?
    @Option(
        help:
            "DeiT: distil from this classifier (any model vit reads, ViT or ResNet, with the data's classes) into the distillation token's head (the student needs --distilled)."
    )
    var teacher: String?
    @Option(help: "hard (cross-entropy against the teacher's top class) or soft (KL divergence at temperature --tau).")
    var distillation: Distillation.Kind = .hard
    @Option(help: "Weight of the distillation loss: (1 - alpha) x the label loss + alpha x the distillation loss.")
    var distillationAlpha: Float = 0.5
    @Option(help: "Soft distillation's temperature.") var tau: Float = 1
    @Flag(help: "Give the ViT a distillation token and head (DeiT); evaluation averages both heads.") var distilled = false
    @Flag(help: "A ResNet with CIFAR's stem (one 3x3 stride-1 convolution, no max pool) for 32 px images.") var cifarStem = false
    @Option(help: "Override the preset's patch size.") var patchSize: Int?
    @Option(help: "Override the preset's token width (a ResNet: the stem's and first stage's width, doubled at each stage).") var width:
        Int?
    @Option(help: "Override the preset's number of blocks.") var depth: Int?
    @Option(help: "Override the preset's number of attention heads.") var heads: Int?
    @Option(help: "Override the preset's MLP width / token width.") var mlpRatio: Float?
    @Option(help: "Label smoothing.") var labelSmoothing = defaults.labelSmoothing
    @Option(help: "Clip the global gradient norm to this (0: off).") var clipGrad = defaults.gradientClip
    @Option(help: "EMA decay of the weights, e.g. 0.999 (off unless given); evaluation and the saved model use the EMA.")
    var ema: Float?
    @Option(help: "Stochastic depth rate of the last block.") var dropPath = ViTConfig().dropPath
    @Option(help: "Dropout after the MLP and projections.") var dropout = ViTConfig().dropout
    @Option(help: "Random crop after this much zero padding (0: off).") var cropPadding = defaults.augmentation.cropPadding
    @Flag(inversion: .prefixedNo, help: "Random horizontal flips.") var flip = defaults.augmentation.horizontalFlip
    @Option(help: "RandAugment N,M: N operations at magnitude M of 10 (e.g. 2,9; default: off).") var randaugment: RandAugmentSetting?
    @Option(help: "Probability of random erasing per image.") var randomErasing = defaults.augmentation.randomErasing
    @Option(help: "Mixup alpha (0: off).") var mixup = defaults.mixing.mixupAlpha
    @Option(help: "CutMix alpha (0: off).") var cutmix = defaults.mixing.cutmixAlpha
    @OptionGroup var runOptions: RunOptions<TrainingOptions>
    @OptionGroup var imageLimit: ImageLimitOptions

    func validate() throws {
        if let valSplit, !(valSplit > 0 && valSplit < 1) { throw ValidationError("--val-split must be in (0, 1)") }
        if let imageSize, imageSize < 1 { throw ValidationError("--image-size must be at least 1") }
        // Every number of the recipe, named by its option, before any data is read.
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ValidationError(message) } }
        try check(labelSmoothing >= 0 && labelSmoothing < 1, "--label-smoothing must be in [0, 1), got \(labelSmoothing)")
        try check(clipGrad >= 0 && clipGrad.isFinite, "--clip-grad must be zero (off) or more, got \(clipGrad)")
        try check(dropPath >= 0 && dropPath < 1, "--drop-path must be in [0, 1), got \(dropPath)")
        try check(dropout >= 0 && dropout < 1, "--dropout must be in [0, 1), got \(dropout)")
        try check(randomErasing >= 0 && randomErasing <= 1, "--random-erasing must be in [0, 1], got \(randomErasing)")
        try check(mixup >= 0 && mixup.isFinite && cutmix >= 0 && cutmix.isFinite, "--mixup and --cutmix must be zero (off) or more")
        try check(cropPadding >= 0, "--crop-padding must be zero or more, got \(cropPadding)")
        try check(momentum >= 0 && momentum < 1, "--momentum must be in [0, 1), got \(momentum)")
        try check(accumulate >= 1, "--accumulate must be at least 1, got \(accumulate)")
        if let ema { try check(ema > 0 && ema < 1, "--ema must be in (0, 1), got \(ema)") }
        if let layerDecay { try check(layerDecay > 0 && layerDecay <= 1, "--layer-decay must be in (0, 1], got \(layerDecay)") }
        try check(distillationAlpha >= 0 && distillationAlpha <= 1, "--distillation-alpha must be in [0, 1], got \(distillationAlpha)")
        try check(tau > 0 && tau.isFinite, "--tau must be positive, got \(tau)")
        if teacher != nil && !distilled && initialCheckpoint == nil {
            throw ValidationError("--teacher distils into a distillation token: add --distilled")
        }
    }

    var outputPath: String { runOptions.output }
    var seed: UInt64 { runOptions.seedValue }

    func run() throws {
        imageLimit.apply()
        let interrupt = Interrupt()
        let folder = URL(fileURLWithPath: outputPath)
        let trainer = runOptions.resume ? try resumedTrainer(folder) : try newTrainer(folder)
        try TrainingProgress.run(
            trainer, maxSteps: runOptions.maxSteps, interrupt: interrupt, output: outputPath,
            files: "model.safetensors, config.json, metrics.jsonl, curves.png")
    }

    /// A new run: the data at the chosen size, the validation images, a model that fits in memory.
    func newTrainer(_ folder: URL) throws -> Trainer {
        try runOptions.checkNewRun()
        let options = try recipe()
        if let initialCheckpoint { return try fineTuningTrainer(folder, from: initialCheckpoint, options: options) }
        if linearProbe { throw CommandFailure("--linear-probe trains the head of a pretrained model: give --init CHECKPOINT") }
        if let (block, layers) = ResNet.presets[arch] {
            // A convnet (a teacher for distillation, or a baseline): timm's ResNet, optionally with CIFAR's stem.
            var config = ResNetConfig()
            (config.block, config.layers, config.cifarStem) = (block, layers, cifarStem)
            if let width {
                // timm's ResNets double the width at each stage from the stem's: --width scales them all (a narrow
                // teacher costs a quarter of the arithmetic at half the width).
                (config.stemWidth, config.channels) = (width, [width, 2 * width, 4 * width, 8 * width])
            }
            let vitOnly = [
                ("--patch-size", patchSize != nil), ("--depth", depth != nil), ("--heads", heads != nil), ("--mlp-ratio", mlpRatio != nil)
            ]
            if let (name, _) = vitOnly.first(where: \.1) {
                throw CommandFailure(
                    "\(name) shapes a ViT; a ResNet's depth is its preset (resnet18, resnet34, ...) and --width its stem's width")
            }
            if distilled { throw CommandFailure("--distilled gives a ViT a distillation token; a ResNet has none") }
            if layerDecay != nil { throw CommandFailure("--layer-decay counts a ViT's blocks; a ResNet has none") }
            if let imageSize {
                // Refuse before reading any data when the size is known.
                config.imageSize = imageSize
                try MemoryEstimate(architecture: .resnet(config), batchSize: options.batchSize).check(
                    available: MemoryEstimate.availableBytes())
            }
            let sizing: ImageSizing = imageSize.map { .size($0) } ?? .nativeIfUniform(fallback: config.imageSize)
            let (trainSet, validationSet, source) = try loadData(sizing: sizing, split: valSplit.map { ($0, seed) })
            let model = try makeModel(.resnet(config), for: trainSet)
            let (trainer, estimate) = try checkedTrainer(model, options, trainSet, validationSet, source, folder)
            printError(
                "\(arch)\(cifarStem ? " (CIFAR stem)" : "") at \(trainSet.width) px: \(trainer.model.parameterCount) parameters, \(trainer.options.epochs) epochs of \(trainer.stepsPerEpoch) steps; about \(String(format: "%.1f", estimate.totalBytes / 1_073_741_824)) GiB a step"
            )
            return trainer
        }
        if cifarStem { throw CommandFailure("--cifar-stem is a ResNet's option (--arch resnet18, resnet34, resnet50, ...)") }
        var config = try architecture()
        if let imageSize {
            // Refuse before reading any data when the size is known.
            config.imageSize = imageSize
            try MemoryEstimate(config: config, batchSize: options.batchSize).check(available: MemoryEstimate.availableBytes())
        }
        let sizing: ImageSizing = imageSize.map { .size($0) } ?? .nativeIfUniform(fallback: config.imageSize)
        let (trainSet, validationSet, source) = try loadData(sizing: sizing, split: valSplit.map { ($0, seed) })
        let model = try makeModel(.vit(config), for: trainSet)
        let (trainer, estimate) = try checkedTrainer(model, options, trainSet, validationSet, source, folder)
        printError(
            "\(arch) at \(trainSet.width) px: \(trainer.model.parameterCount) parameters, \(trainer.options.epochs) epochs of \(trainer.stepsPerEpoch) steps; about \(String(format: "%.1f", estimate.totalBytes / 1_073_741_824)) GiB a step"
        )
        return trainer
    }

    /// The trainer of a new run, once one step's memory (the data's included) is known to fit.
    func checkedTrainer(
        _ model: any ImageModel, _ options: TrainingOptions, _ trainSet: ImageDataset, _ validationSet: ImageDataset?,
        _ source: ValidationSource, _ folder: URL
    ) throws -> (trainer: Trainer, estimate: MemoryEstimate) {
        let estimate = MemoryEstimate(
            architecture: model.architecture, batchSize: options.batchSize,
            dataBytes: trainSet.pixels.count + (validationSet?.pixels.count ?? 0))
        try estimate.check(available: MemoryEstimate.availableBytes())
        let trainer = try Trainer(
            model: model, options: options, trainSet: trainSet, validationSet: validationSet, validationSource: source,
            folder: folder, teacher: try loadTeacher(options))
        return (trainer, estimate)
    }

    /// The teacher of a distillation run (`options.teacher`), as any model vit reads.
    func loadTeacher(_ options: TrainingOptions) throws -> (any ImageModel)? {
        guard options.distillation != nil, let path = options.teacher else { return nil }
        let teacher = try CheckpointLoader().loadModel(try BuiltInModel.resolve(path))
        printError(
            "teacher: \(path) (\(teacher.architecture.summary), \(teacher.architecture.imageSize) px), \(options.distillation!.kind.rawValue) distillation, alpha \(options.distillation!.alpha)"
        )
        return teacher
    }

    /// A fine-tune of `checkpoint`: its architecture at --image-size (default: its own), the data resized to it.
    func fineTuningTrainer(_ folder: URL, from checkpoint: String, options: TrainingOptions) throws -> Trainer {
        if patchSize != nil || width != nil || depth != nil || mlpRatio != nil || arch != "vit_cifar_patch4_32" {
            throw CommandFailure("--init takes the checkpoint's architecture: drop --arch, --patch-size, --width, --depth and --mlp-ratio")
        }
        let resolved = try BuiltInModel.resolve(checkpoint)
        if try CheckpointLoader.holdsResNet(resolved) { return try resNetFineTuningTrainer(folder, from: resolved, options: options) }
        let loader = CheckpointLoader(heads: heads, imageSize: imageSize)
        let (checkpointConfig, tensors, weights) = try loader.read(resolved)
        var sized = checkpointConfig
        sized.pooling = pooling ?? sized.pooling
        try MemoryEstimate(config: sized, batchSize: options.batchSize).check(available: MemoryEstimate.availableBytes())
        let (trainSet, validationSet, source) = try loadData(sizing: .size(checkpointConfig.imageSize), split: valSplit.map { ($0, seed) })
        GlobalRandom.seed(seed)
        let (model, report) = try FineTuning.model(
            checkpointConfig: checkpointConfig, tensors: tensors, classNames: trainSet.classNames, pooling: pooling,
            dropout: dropout, dropPath: dropPath, headInit: headInit)
        printError("fine-tuning \(weights.path): \(report.summary)")
        let (trainer, estimate) = try checkedTrainer(model, options, trainSet, validationSet, source, folder)
        let trained = trainer.model.parameters().filter(\.requiresGrad).reduce(0) { $0 + $1.count }
        printError(
            "\(model.config.width)-wide, \(model.config.depth) blocks at \(trainSet.width) px, \(model.config.pooling.rawValue) pooling: \(trained) of \(trainer.model.parameterCount) parameters train, \(trainer.options.epochs) epochs of \(trainer.stepsPerEpoch) steps; about \(String(format: "%.1f", estimate.totalBytes / 1_073_741_824)) GiB a step"
        )
        return trainer
    }

    /// A fine-tune of a ResNet checkpoint at --image-size (default: its own), the data resized to it.
    func resNetFineTuningTrainer(_ folder: URL, from checkpoint: URL, options: TrainingOptions) throws -> Trainer {
        if pooling != nil { throw CommandFailure("--pooling chooses a ViT's pooling; a ResNet averages its last feature map") }
        if distilled { throw CommandFailure("--distilled gives a ViT a distillation token; a ResNet has none") }
        // Refused before the data is read, as for a new ResNet (the trainer would refuse it only after).
        if layerDecay != nil { throw CommandFailure("--layer-decay counts a ViT's blocks; a ResNet has none") }
        guard let pretrained = try CheckpointLoader().loadModel(checkpoint) as? ResNet else {
            throw CommandFailure("\(checkpoint.path) has a ResNet's tensor names but did not load as one")
        }
        let size = imageSize ?? pretrained.config.imageSize
        var sized = pretrained.config
        (sized.imageSize, sized.numClasses) = (size, max(sized.numClasses, 1))
        try MemoryEstimate(architecture: .resnet(sized), batchSize: options.batchSize).check(available: MemoryEstimate.availableBytes())
        let (trainSet, validationSet, source) = try loadData(sizing: .size(size), split: valSplit.map { ($0, seed) })
        GlobalRandom.seed(seed)
        let (model, report) = try FineTuning.resNet(from: pretrained, classNames: trainSet.classNames, imageSize: size, headInit: headInit)
        printError("fine-tuning \(checkpoint.path): \(report.summary)")
        let (trainer, estimate) = try checkedTrainer(model, options, trainSet, validationSet, source, folder)
        let trained = trainer.model.parameters().filter(\.requiresGrad).reduce(0) { $0 + $1.count }
        printError(
            "ResNet (\(model.config.block.rawValue) blocks \(model.config.layers)) at \(trainSet.width) px: \(trained) of \(trainer.model.parameterCount) parameters train, \(trainer.options.epochs) epochs of \(trainer.stepsPerEpoch) steps; about \(String(format: "%.1f", estimate.totalBytes / 1_073_741_824)) GiB a step"
        )
        return trainer
    }

    /// The run in `folder`, with the data at its size and the validation images it saved.
    func resumedTrainer(_ folder: URL) throws -> Trainer {
        let saved = try Trainer.savedRun(in: folder)
        var split: (Double, UInt64)?
        switch saved.validation {
        case let .split(fraction, savedSeed, _)?:
            if let valSplit, valSplit != fraction {
                throw CommandFailure(
                    "the run in \(outputPath) holds out --val-split \(fraction), not \(valSplit): resume without --val-split")
            }
            split = (fraction, savedSeed)
        default:
            if let valSplit {
                throw CommandFailure(
                    "the run in \(outputPath) was started without --val-split; --val-split \(valSplit) would change its validation images")
            }
        }
        let (trainSet, validationSet, source) = try loadData(sizing: .size(try saved.architecture.imageSize), split: split)
        let trainer = try Trainer.resume(
            folder: folder, trainSet: trainSet, validationSet: validationSet,
            validationSource: source, epochs: runOptions.epochs, teacher: try loadTeacher(saved.options),
            precision: runOptions.precision)
        printError("resuming at epoch \(trainer.state.epoch + 1), batch \(trainer.state.batch + 1) of \(trainer.stepsPerEpoch)")
        ResumedRun.notePrecisionChange(from: saved.options.precision, to: trainer.options.precision)
        ResumedRun.noteUnusedOptions(used: ["--val-split"], changeable: ["--epochs", "--precision"])
        return trainer
    }

    /// The training images and the validation images, which never overlap: --val-split of the training part, else
    /// the test part, else none (said in the log).
    func loadData(sizing: ImageSizing, split: (fraction: Double, seed: UInt64)?) throws
        -> (train: ImageDataset, validation: ImageDataset?, source: ValidationSource)
    {
        printError("reading \(data) ...")
        let started = Date()
        let parts = try ImageDataset.load(URL(fileURLWithPath: data), parts: split != nil ? [.train] : [.train, .test], sizing: sizing)
        guard var trainSet = parts[.train] else { throw CommandFailure("\(data) has no training images") }
        var validationSet = parts[.test]
        var source: ValidationSource = validationSet == nil ? .none : .testPart
        if let split {
            (trainSet, validationSet) = trainSet.stratifiedSplit(validationFraction: split.fraction, seed: split.seed)
            source = .split(fraction: split.fraction, seed: split.seed, files: validationSet!.sources)
        }
        for failure in trainSet.failures + (validationSet?.failures ?? []) { printError("skipped: \(failure)") }
        if let validationSet, validationSet.classNames != trainSet.classNames {
            throw CommandFailure("\(data): the test part has classes \(validationSet.classNames), the training part \(trainSet.classNames)")
        }
        printError(
            "\(trainSet.count) training images of \(trainSet.width)x\(trainSet.height), \(trainSet.classNames.count) classes; \(source.summary) (\(String(format: "%.1f", Date().timeIntervalSince(started))) s)"
        )
        return (trainSet, validationSet, source)
    }

    /// The preset with the command line's overrides.
    func architecture() throws -> ViTConfig {
        var config: ViTConfig
        do { config = try ViTConfig.preset(arch) } catch { throw CommandFailure("--arch: \(error)") }
        if let patchSize { config.patchSize = patchSize }
        if let width { config.width = width }
        if let depth { config.depth = depth }
        if let heads { config.heads = heads }
        if let mlpRatio { config.mlpRatio = mlpRatio }
        config.dropPath = dropPath
        config.dropout = dropout
        if let pooling { config.pooling = pooling }
        config.distillationToken = distilled
        return config
    }

    /// `architecture` at the data's image size and class count, with the data's own normalisation.
    func makeModel(_ architecture: Architecture, for data: ImageDataset) throws -> any ImageModel {
        guard data.width == data.height else {
            throw CommandFailure("training needs square images, the data has \(data.width)x\(data.height): give --image-size")
        }
        var dataConfig = architecture.data
        dataConfig.inputSize = [3, data.width, data.width]
        dataConfig.cropPct = 1
        (dataConfig.mean, dataConfig.std) = data.channelStatistics()
        var sized: Architecture
        switch architecture {
        case .vit(var config):
            (config.imageSize, config.numClasses, config.labels, config.data) = (
                data.width, data.classNames.count, data.classNames, dataConfig
            )
            do { try config.validate() } catch { throw CommandFailure("the architecture at \(data.width) px: \(error)") }
            sized = .vit(config)
        case .resnet(var config):
            (config.imageSize, config.numClasses, config.labels, config.data) = (
                data.width, data.classNames.count, data.classNames, dataConfig
            )
            do { try config.validate() } catch { throw CommandFailure("the architecture at \(data.width) px: \(error)") }
            sized = .resnet(config)
        }
        GlobalRandom.seed(seed)
        return try sized.build()
    }

    func recipe() throws -> TrainingOptions {
        var options = TrainingOptions()
        options.labelSmoothing = labelSmoothing
        options.gradientClip = clipGrad
        options.emaDecay = ema
        options.augmentation.cropPadding = cropPadding
        options.augmentation.horizontalFlip = flip
        if let randaugment {
            options.augmentation.randAugmentOps = randaugment.operations
            options.augmentation.randAugmentMagnitude = randaugment.magnitude
        }
        options.augmentation.randomErasing = randomErasing
        options.mixing = BatchMixing(mixupAlpha: mixup, cutmixAlpha: cutmix)
        options.optimizer = optimizer == .adamw ? nil : optimizer
        options.momentum = optimizer == .sgd ? momentum : nil
        options.layerDecay = layerDecay
        options.headOnly = linearProbe ? true : nil
        options.accumulate = accumulate == 1 ? nil : accumulate
        if let teacher {
            options.teacher = teacher
            options.distillation = Distillation(kind: distillation, alpha: distillationAlpha, tau: tau)
        }
        return try runOptions.recipe(options)
    }
}

/// RandAugment's N,M: N operations per image at magnitude M (of 10).
struct RandAugmentSetting: ExpressibleByArgument {
    let operations: Int
    let magnitude: Float
    init?(argument: String) {
        let parts = argument.split(separator: ",")
        guard parts.count == 2, let n = Int(parts[0]), let m = Float(parts[1]), n >= 0, m >= 0, m <= 30 else { return nil }
        (operations, magnitude) = (n, m)
    }
    static var defaultValueDescription: String { "N,M" }
}

extension Distillation.Kind: ExpressibleByArgument {}
