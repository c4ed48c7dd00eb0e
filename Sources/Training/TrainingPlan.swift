import Checkpoints
import Datasets
import Foundation
import Images
import Tensors
import ViT

/// How a classifier's training run starts, planned as `vit train` plans it and callable from Swift: the model (a
/// ViT or ResNet preset with overrides, or a checkpoint to fine-tune), the data and its validation images, the
/// recipe and the teacher; the memory a step needs is checked before anything large is allocated.
///
/// A plan that cannot run throws `TrainingError.badFields`, a `FieldProblem` naming the fields at fault (`shape.patchSize`, `initialCheckpoint`,
/// and the recipe's by their own names: `layerDecay`); the command line names its flags instead.
public struct TrainingPlan {
    /// A new model's architecture: a ViT preset (`vit_cifar_patch4_32`, `vit_base_patch16_224`, ...) or a ResNet one
    /// (`resnet18`, ...), and what changes it.
    public struct Shape {
        public var preset = "vit_cifar_patch4_32"
        public var patchSize: Int?
        /// A ViT's token width; a ResNet's stem and first stage width (doubled at each stage).
        public var width: Int?
        public var depth: Int?
        public var heads: Int?
        public var mlpRatio: Float?
        public var dropPath = ViTConfig().dropPath
        public var dropout = ViTConfig().dropout
        /// Token or average pooling (nil: the preset's, or a fine-tuned checkpoint's).
        public var pooling: ViTConfig.Pooling?
        /// DeiT's distillation token and head.
        public var distilled = false
        /// A ResNet with CIFAR's stem (one 3x3 stride-1 convolution, no max pool).
        public var cifarStem = false
        public init() {}
    }

    /// The labelled data (an image folder or `.tar.gz`, CIFAR binaries, IDX files).
    public var data: URL
    /// Hold out this fraction of each class of the training images for validation (nil: the data's test part).
    public var validationSplit: Double?
    public var shape = Shape()
    /// Fine-tune this checkpoint instead of a new model (its architecture kept).
    public var initialCheckpoint: URL?
    /// The input size the images are brought to (nil: the data's own size when uniform, else the preset's or the
    /// checkpoint's).
    public var imageSize: Int?
    /// How the data is read: in memory while it fits, else streamed (WebDataset shards, or files decoded per batch).
    public var reading = DataReading()
    /// A new head's initialisation when fine-tuning.
    public var headInit = FineTuning.HeadInit.zeros
    public var recipe: TrainingOptions
    /// A path the recipe names (the teacher) as a file URL: the command line maps its built-in model's name here.
    public var resolveModel: (String) throws -> URL = { URL(fileURLWithPath: $0) }
    /// Progress lines (what is read, the model's size, the teacher).
    public var log: (String) -> Void = { _ in }
    /// The ranks the run's global batch is shared among (data parallelism): each process holds, and the memory
    /// estimates count, its share alone.
    public var ranks = 1
    private var batchPerRank: Int { max(recipe.batchSize / max(ranks, 1), 1) }

    public init(data: URL, recipe: TrainingOptions) {
        self.data = data
        self.recipe = recipe
    }

    /// Every setting in range, before any data is read: the recipe's (`Recipe.validate`) and the plan's own.
    public func validate() throws {
        var problems: [String] = []
        if let validationSplit, !(validationSplit > 0 && validationSplit < 1) {
            problems.append("{validationSplit} must be in (0, 1), got \(validationSplit)")
        }
        if let imageSize, imageSize < 1 { problems.append("{imageSize} must be at least 1, got \(imageSize)") }
        if !(shape.dropPath >= 0 && shape.dropPath < 1) { problems.append("{shape.dropPath} must be in [0, 1), got \(shape.dropPath)") }
        if !(shape.dropout >= 0 && shape.dropout < 1) { problems.append("{shape.dropout} must be in [0, 1), got \(shape.dropout)") }
        if recipe.teacher != nil && !shape.distilled && initialCheckpoint == nil {
            problems.append("{teacher} distils into a distillation token: add {shape.distilled}")
        }
        do { try recipe.validate() } catch TrainingError.badFields(let problem) { problems += problem.templates }
        if !problems.isEmpty { throw TrainingError.fields(problems) }
    }

    /// A new run writing into `folder`.
    public func start(in folder: URL) throws -> Trainer {
        try validate()
        if let initialCheckpoint { return try fineTune(initialCheckpoint, in: folder) }
        if recipe.headOnly == true {
            throw TrainingError.fields("{headOnly} trains the head of a pretrained model: give {initialCheckpoint}")
        }
        if let (block, layers) = ResNet.presets[shape.preset] {
            // A convnet (a teacher for distillation, or a baseline): timm's ResNet, optionally with CIFAR's stem.
            var config = ResNetConfig()
            (config.block, config.layers, config.cifarStem) = (block, layers, shape.cifarStem)
            if let width = shape.width {
                // timm's ResNets double the width at each stage from the stem's: the width scales them all (a narrow
                // teacher costs a quarter of the arithmetic at half the width).
                (config.stemWidth, config.channels) = (width, [width, 2 * width, 4 * width, 8 * width])
            }
            let vitOnly = [
                ("shape.patchSize", shape.patchSize != nil), ("shape.depth", shape.depth != nil), ("shape.heads", shape.heads != nil),
                ("shape.mlpRatio", shape.mlpRatio != nil)
            ]
            if let (name, _) = vitOnly.first(where: \.1) {
                throw TrainingError.fields(
                    "{\(name)} shapes a ViT; a ResNet's depth is its preset (resnet18, resnet34, ...) and {shape.width} its stem's width")
            }
            try refuseViTOnlyChoices()
            if let imageSize {
                // Refused before any data is read when the size is known.
                config.imageSize = imageSize
                try MemoryEstimate(architecture: .resnet(config), batchSize: batchPerRank).check(
                    available: MemoryEstimate.availableBytes())
            }
            let sizing: ImageSizing = imageSize.map { .size($0) } ?? .nativeIfUniform(fallback: config.imageSize)
            let (trainSet, validationSet, source) = try loadData(sizing: sizing, split: validationSplit.map { ($0, recipe.seed) })
            let model = try makeModel(.resnet(config), for: trainSet)
            let (trainer, estimate) = try checkedTrainer(model, trainSet, validationSet, source, folder)
            log(
                "\(shape.preset)\(shape.cifarStem ? " (CIFAR stem)" : "") at \(trainSet.width) px: \(trainer.model.parameterCount) parameters, \(Self.steps(trainer, estimate))"
            )
            return trainer
        }
        if shape.cifarStem {
            throw TrainingError.fields("{shape.cifarStem} is a ResNet's option ({shape.preset} resnet18, resnet34, resnet50, ...)")
        }
        var config = try vitConfig()
        if let imageSize {
            config.imageSize = imageSize
            try MemoryEstimate(config: config, batchSize: batchPerRank).check(available: MemoryEstimate.availableBytes())
        }
        let sizing: ImageSizing = imageSize.map { .size($0) } ?? .nativeIfUniform(fallback: config.imageSize)
        let (trainSet, validationSet, source) = try loadData(sizing: sizing, split: validationSplit.map { ($0, recipe.seed) })
        let model = try makeModel(.vit(config), for: trainSet)
        let (trainer, estimate) = try checkedTrainer(model, trainSet, validationSet, source, folder)
        log("\(shape.preset) at \(trainSet.width) px: \(trainer.model.parameterCount) parameters, \(Self.steps(trainer, estimate))")
        return trainer
    }

    /// Continues the run in `folder` on the same data, at its image size and with the validation images it saved;
    /// `validationSplit` may only repeat the run's. The epoch count may be raised and the precision changed.
    public func resume(in folder: URL, epochs: Int?, precision: Precision?) throws -> Trainer {
        let saved = try Trainer.savedRun(in: folder)
        var split: (Double, UInt64)?
        switch saved.validation {
        case let .split(fraction, savedSeed, _)?:
            if let validationSplit, validationSplit != fraction {
                throw TrainingError.fields(
                    "the run in \(folder.path) holds out {validationSplit} \(fraction), not \(validationSplit): resume without {validationSplit}"
                )
            }
            split = (fraction, savedSeed)
        default:
            if let validationSplit {
                throw TrainingError.fields(
                    "the run in \(folder.path) was started without {validationSplit}; {validationSplit} \(validationSplit) would change its validation images"
                )
            }
        }
        let (trainSet, validationSet, source) = try loadData(sizing: .size(try saved.architecture.imageSize), split: split)
        let trainer = try Trainer.resume(
            folder: folder, trainSet: trainSet, validationSet: validationSet, validationSource: source, epochs: epochs,
            teacher: try loadTeacher(saved.options), precision: precision)
        log("resuming at epoch \(trainer.state.epoch + 1), batch \(trainer.state.batch + 1) of \(trainer.stepsPerEpoch)")
        return trainer
    }

    // MARK: Steps of a plan

    /// "30 epochs of 390 steps; about 0.5 GiB a step"
    static func steps(_ trainer: Trainer, _ estimate: MemoryEstimate) -> String {
        "\(trainer.options.epochs) epochs of \(trainer.stepsPerEpoch) steps; about \(String(format: "%.1f", estimate.totalBytes / 1_073_741_824)) GiB a step"
    }

    /// What only a ViT has, refused for a ResNet before any data is read (the trainer would refuse it only after).
    private func refuseViTOnlyChoices() throws {
        if shape.distilled { throw TrainingError.fields("{shape.distilled} gives a ViT a distillation token; a ResNet has none") }
        if recipe.layerDecay != nil { throw TrainingError.fields("{layerDecay} counts a ViT's blocks; a ResNet has none") }
    }

    /// The trainer of a new run, once one step's memory (the data's included) is known to fit.
    private func checkedTrainer(
        _ model: any ImageModel, _ trainSet: any TrainingImages, _ validationSet: (any TrainingImages)?, _ source: ValidationSource,
        _ folder: URL
    ) throws -> (trainer: Trainer, estimate: MemoryEstimate) {
        // A stream's images are not resident: what it holds is a few batches, small beside the step's activations.
        let resident = [trainSet, validationSet].compactMap { ($0 as? ImageDataset)?.pixels.count }.reduce(0, +)
        let estimate = MemoryEstimate(architecture: model.architecture, batchSize: batchPerRank, dataBytes: resident)
        try estimate.check(available: MemoryEstimate.availableBytes())
        let trainer = try Trainer(
            model: model, options: recipe, trainSet: trainSet, validationSet: validationSet, validationSource: source, folder: folder,
            teacher: try loadTeacher(recipe))
        return (trainer, estimate)
    }

    /// The teacher of a distillation run (`options.teacher`), as any model vit reads.
    private func loadTeacher(_ options: TrainingOptions) throws -> (any ImageModel)? {
        guard let distillation = options.distillation, let path = options.teacher else { return nil }
        let teacher = try CheckpointLoader().loadModel(try resolveModel(path))
        log(
            "teacher: \(path) (\(teacher.architecture.summary), \(teacher.architecture.imageSize) px), \(distillation.kind.rawValue) distillation, alpha \(distillation.alpha)"
        )
        return teacher
    }

    /// A fine-tune of `checkpoint`: its architecture at `imageSize` (default: its own), the data resized to it.
    private func fineTune(_ checkpoint: URL, in folder: URL) throws -> Trainer {
        let defaults = Shape()
        if shape.patchSize != nil || shape.width != nil || shape.depth != nil || shape.mlpRatio != nil || shape.preset != defaults.preset {
            throw TrainingError.fields(
                "{initialCheckpoint} takes the checkpoint's architecture: drop {shape.preset}, {shape.patchSize}, {shape.width}, {shape.depth} and {shape.mlpRatio}"
            )
        }
        if try CheckpointLoader.holdsResNet(checkpoint) { return try fineTuneResNet(checkpoint, in: folder) }
        let loader = CheckpointLoader(heads: shape.heads, imageSize: imageSize)
        let (checkpointConfig, tensors, weights) = try loader.read(checkpoint)
        var sized = checkpointConfig
        sized.pooling = shape.pooling ?? sized.pooling
        try MemoryEstimate(config: sized, batchSize: batchPerRank).check(available: MemoryEstimate.availableBytes())
        let (trainSet, validationSet, source) = try loadData(
            sizing: .size(checkpointConfig.imageSize), split: validationSplit.map { ($0, recipe.seed) })
        GlobalRandom.seed(recipe.seed)
        let (model, report) = try FineTuning.model(
            checkpointConfig: checkpointConfig, tensors: tensors, classNames: trainSet.classNames, pooling: shape.pooling,
            dropout: shape.dropout, dropPath: shape.dropPath, headInit: headInit, distilled: shape.distilled)
        log("fine-tuning \(weights.path): \(report.summary)")
        let (trainer, estimate) = try checkedTrainer(model, trainSet, validationSet, source, folder)
        let trained = trainer.model.parameters().filter(\.requiresGrad).reduce(0) { $0 + $1.count }
        log(
            "\(model.config.width)-wide, \(model.config.depth) blocks at \(trainSet.width) px, \(model.config.pooling.rawValue) pooling: \(trained) of \(trainer.model.parameterCount) parameters train, \(Self.steps(trainer, estimate))"
        )
        return trainer
    }

    /// A fine-tune of a ResNet checkpoint at `imageSize` (default: its own), the data resized to it.
    private func fineTuneResNet(_ checkpoint: URL, in folder: URL) throws -> Trainer {
        if shape.pooling != nil {
            throw TrainingError.fields("{shape.pooling} chooses a ViT's pooling; a ResNet averages its last feature map")
        }
        try refuseViTOnlyChoices()
        guard let pretrained = try CheckpointLoader().loadModel(checkpoint) as? ResNet else {
            throw TrainingError.fields("\(checkpoint.path) has a ResNet's tensor names but did not load as one")
        }
        let size = imageSize ?? pretrained.config.imageSize
        var sized = pretrained.config
        (sized.imageSize, sized.numClasses) = (size, max(sized.numClasses, 1))
        try MemoryEstimate(architecture: .resnet(sized), batchSize: batchPerRank).check(available: MemoryEstimate.availableBytes())
        let (trainSet, validationSet, source) = try loadData(sizing: .size(size), split: validationSplit.map { ($0, recipe.seed) })
        GlobalRandom.seed(recipe.seed)
        let (model, report) = try FineTuning.resNet(from: pretrained, classNames: trainSet.classNames, imageSize: size, headInit: headInit)
        log("fine-tuning \(checkpoint.path): \(report.summary)")
        let (trainer, estimate) = try checkedTrainer(model, trainSet, validationSet, source, folder)
        let trained = trainer.model.parameters().filter(\.requiresGrad).reduce(0) { $0 + $1.count }
        log(
            "ResNet (\(model.config.block.rawValue) blocks \(model.config.layers)) at \(trainSet.width) px: \(trained) of \(trainer.model.parameterCount) parameters train, \(Self.steps(trainer, estimate))"
        )
        return trainer
    }

    /// The training images and the validation images, which never overlap: a split of the training part, else the
    /// test part, else none (said in the log). Each is in memory or streamed, as `reading` decides.
    private func loadData(sizing: ImageSizing, split: (fraction: Double, seed: UInt64)?) throws
        -> (train: any TrainingImages, validation: (any TrainingImages)?, source: ValidationSource)
    {
        log("reading \(data.path) ...")
        let started = Date()
        let parts = try reading.load(data.path, parts: split != nil ? [.train] : [.train, .test], sizing: sizing, needs: .label)
        guard let train = parts[.train] else { throw TrainingError.fields("\(data.path) has no training images") }
        var trainSet = train.images
        var validationSet = parts[.test]?.images
        var source: ValidationSource = validationSet == nil ? .none : .testPart
        if let split {
            guard case .memory(let all) = train else {
                throw TrainingError.fields(
                    "{validationSplit} holds out images of a set in memory; a streamed set validates on its test part (test-*.tar or val-*.tar shards, or a test/ folder)"
                )
            }
            let (kept, held) = all.stratifiedSplit(validationFraction: split.fraction, seed: split.seed)
            (trainSet, validationSet) = (kept, held)
            source = .split(fraction: split.fraction, seed: split.seed, files: held.sources)
        }
        for part in [trainSet, validationSet] {
            for failure in (part as? ImageDataset)?.failures ?? [] { log("skipped: \(failure)") }
        }
        if let validationSet, validationSet.classNames != trainSet.classNames {
            throw TrainingError.fields(
                "\(data.path): the test part has classes \(validationSet.classNames), the training part \(trainSet.classNames)")
        }
        // A streamed set cannot hold images out (--val-split): its hint is a test part instead.
        let validation =
            source == .none && !(train.images is ImageDataset)
            ? "no validation (the data has no test part: add test-*.tar shards or a test/ folder)" : source.summary
        log(
            "\(trainSet.count) training images of \(trainSet.width)x\(trainSet.height), \(trainSet.classNames.count) classes, \(trainSet.readingSummary); \(validation) (\(String(format: "%.1f", Date().timeIntervalSince(started))) s)"
        )
        return (trainSet, validationSet, source)
    }

    /// The ViT preset with the shape's overrides.
    private func vitConfig() throws -> ViTConfig {
        var config: ViTConfig
        do { config = try ViTConfig.preset(shape.preset) } catch { throw TrainingError.fields("{shape.preset}: \(error)") }
        if let patchSize = shape.patchSize { config.patchSize = patchSize }
        if let width = shape.width { config.width = width }
        if let depth = shape.depth { config.depth = depth }
        if let heads = shape.heads { config.heads = heads }
        if let mlpRatio = shape.mlpRatio { config.mlpRatio = mlpRatio }
        config.dropPath = shape.dropPath
        config.dropout = shape.dropout
        if let pooling = shape.pooling { config.pooling = pooling }
        config.distillationToken = shape.distilled
        return config
    }

    /// `architecture` at the data's image size and class count, with the data's own normalisation.
    private func makeModel(_ architecture: Architecture, for data: any TrainingImages) throws -> any ImageModel {
        guard data.width == data.height else {
            throw TrainingError.fields("training needs square images, the data has \(data.width)x\(data.height): give {imageSize}")
        }
        var dataConfig = architecture.data
        dataConfig.inputSize = [3, data.width, data.width]
        dataConfig.cropPct = 1
        (dataConfig.mean, dataConfig.std) = try data.channelStatistics()
        var sized: Architecture
        switch architecture {
        case .vit(var config):
            (config.imageSize, config.numClasses, config.labels, config.data) = (
                data.width, data.classNames.count, data.classNames, dataConfig
            )
            do { try config.validate() } catch { throw TrainingError.fields("the architecture at \(data.width) px: \(error)") }
            sized = .vit(config)
        case .resnet(var config):
            (config.imageSize, config.numClasses, config.labels, config.data) = (
                data.width, data.classNames.count, data.classNames, dataConfig
            )
            do { try config.validate() } catch { throw TrainingError.fields("the architecture at \(data.width) px: \(error)") }
            sized = .resnet(config)
        }
        GlobalRandom.seed(recipe.seed)
        return try sized.build()
    }
}
