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
            a folder of CIFAR-10/100 .bin files, a folder of IDX files (MNIST, Fashion-MNIST), or WebDataset shards of \
            KEY.jpg and KEY.cls (a folder of train-*.tar beside test-*.tar or val-*.tar, as vit shard writes it, or a \
            list such as data/train-{000000..000127}.tar, several joined with ::). A set whose decoded images would take \
            more than half the available memory is streamed: decoded batch by batch by --workers threads, shards \
            shuffled per epoch and then through a buffer, as webdataset does (--data-reading says which). Images of any size \
            are resized, when loaded or read, to --image-size (default: the data's own size when all images share one \
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

    @Option(
        help:
            "What to train: classification (a ViT or ResNet classifier), detection (DETR on a COCO-format --data folder: instances_train.json and instances_val.json beside the images; see vit detection-data), or generation (an Image Transformer on --data's images: bits/dim on its test part; see vit generate)."
    )
    var task: ModelTask = .classification
    @Option(help: "Training data (see above).") var data: String
    @Option(help: "Detection: DETR's object queries (at most this many objects per image; default 20).") var queries: Int?
    @Option(
        help:
            "Detection: start the backbone from this ResNet (a timm checkpoint or a vit train --arch resnet run); its shape decides the backbone's."
    )
    var backboneInit: String?
    @Option(help: "Detection: a random backbone's stem and first-stage width, doubled at each stage (default 64, as resnet18's).")
    var backboneWidth: Int?
    @Option(help: "Hold out this fraction of each class of the training images for validation (default: the data's test part, if any).")
    var valSplit: Double?
    @Option(help: "Architecture preset; the class count follows the data.") var arch = "vit_cifar_patch4_32"
    @Option(
        name: .customLong("init"),
        help:
            "Fine-tune: start from this checkpoint (any --model vit reads: timm, Hugging Face, .npz, .pth, a vit train run; with --task detection, a DETR) instead of random weights; its architecture and normalisation are kept, position embeddings resampled to --image-size, the head replaced when the classes differ."
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
    @Option(help: "Dropout after the MLP and projections (--task detection: after attention and feed-forward, default 0.1 as DETR's).")
    var dropout = ViTConfig().dropout
    @Option(help: "Random crop after this much zero padding (0: off).") var cropPadding = defaults.augmentation.cropPadding
    @Flag(inversion: .prefixedNo, help: "Random horizontal flips.") var flip = defaults.augmentation.horizontalFlip
    @Option(help: "RandAugment N,M: N operations at magnitude M of 10 (e.g. 2,9; default: off).") var randaugment: RandAugmentSetting?
    @Option(help: "Probability of random erasing per image.") var randomErasing = defaults.augmentation.randomErasing
    @Option(help: "Mixup alpha (0: off).") var mixup = defaults.mixing.mixupAlpha
    @Option(help: "CutMix alpha (0: off).") var cutmix = defaults.mixing.cutmixAlpha
    @Option(help: "Generation: sub-pixels per block of the Image Transformer's local attention (default 256).") var blockLength: Int?
    @Option(
        help:
            "Generation: local 2-D attention in query blocks of ROWS,COLUMNS (columns count sub-pixels: 3 per RGB pixel), generating in block raster order (default: local 1-D attention)."
    )
    var queryShape: SizePair?
    @Option(
        help: "Generation, with --query-shape: the memory flange, ROWS above each block and COLUMNS each side (default 16,32, as t2t's).")
    var memoryFlange: SizePair?
    @Flag(help: "Generation: condition the Image Transformer on the data's classes (vit generate --class NAME).") var conditional = false
    @Option(help: "Generation: test images scored after each epoch (default: all).") var evalImages: Int?
    @OptionGroup var runOptions: RunOptions<TrainingOptions>
    @OptionGroup var dataReading: DataReadingOptions
    @OptionGroup var imageLimit: ImageLimitOptions

    func run() throws {
        imageLimit.apply()
        if task == .detection {
            return try runOptions.train(files: "model.safetensors, config.json, preprocessor_config.json, metrics.jsonl, curves.png") {
                try detectionTrainer($0)
            }
        }
        if task == .generation {
            return try runOptions.train(files: "model.safetensors, config.json, metrics.jsonl, curves.png") { try generationTrainer($0) }
        }
        if blockLength != nil || conditional || evalImages != nil || queryShape != nil || memoryFlange != nil {
            throw CommandFailure(
                "--block-length, --query-shape, --memory-flange, --conditional and --eval-images are for --task generation")
        }
        if queries != nil || backboneInit != nil || backboneWidth != nil {
            throw CommandFailure("--queries, --backbone-init and --backbone-width are for --task detection")
        }
        try runOptions.train(files: "model.safetensors, config.json, metrics.jsonl, curves.png") { try trainer($0) }
    }

    /// The flag of each field a `FieldProblem` names: the plan's, and the recipe's beyond the shared ones.
    static let flags = [
        "initialCheckpoint": "--init", "headOnly": "--linear-probe", "layerDecay": "--layer-decay",
        "labelSmoothing": "--label-smoothing", "gradientClip": "--clip-grad", "emaDecay": "--ema", "momentum": "--momentum",
        "accumulate": "--accumulate", "augmentation.randomErasing": "--random-erasing", "augmentation.cropPadding": "--crop-padding",
        "mixing.mixupAlpha": "--mixup", "mixing.cutmixAlpha": "--cutmix", "distillation.alpha": "--distillation-alpha",
        "distillation.tau": "--tau", "teacher": "--teacher", "shape.dropPath": "--drop-path", "shape.dropout": "--dropout",
        "shape.preset": "--arch", "shape.patchSize": "--patch-size", "shape.width": "--width", "shape.depth": "--depth",
        "shape.heads": "--heads", "shape.mlpRatio": "--mlp-ratio", "shape.pooling": "--pooling", "shape.distilled": "--distilled",
        "shape.cifarStem": "--cifar-stem", "imageSize": "--image-size", "validationSplit": "--val-split"
    ]

    /// A new run, or the run in `folder` continued: the library plans it from the flags.
    func trainer(_ folder: URL) throws -> Trainer {
        do {
            if runOptions.resume {
                let trainer = try plan(recipe: TrainingOptions()).resume(
                    in: folder, epochs: runOptions.epochs, precision: runOptions.precision)
                let saved = try Trainer.savedRun(in: folder)
                ResumedRun.notePrecisionChange(from: saved.options.precision, to: trainer.options.precision)
                ResumedRun.noteUnusedOptions(used: ["--val-split"], changeable: ["--epochs", "--precision"])
                return trainer
            }
            try runOptions.checkNewRun()
            return try plan(recipe: try recipe()).start(in: folder)
        } catch TrainingError.badFields(let problem) {
            throw CommandFailure(problem.described(naming: RunOptions<TrainingOptions>.flags.merging(Self.flags) { shared, _ in shared }))
        }
    }

    /// The flags as a plan.
    func plan(recipe: TrainingOptions) throws -> TrainingPlan {
        var plan = TrainingPlan(data: URL(fileURLWithPath: data), recipe: recipe)
        plan.validationSplit = valSplit
        plan.shape.preset = arch
        (plan.shape.patchSize, plan.shape.width, plan.shape.depth, plan.shape.heads, plan.shape.mlpRatio) = (
            patchSize, width, depth, heads, mlpRatio
        )
        (plan.shape.dropPath, plan.shape.dropout, plan.shape.pooling) = (dropPath, dropout, pooling)
        (plan.shape.distilled, plan.shape.cifarStem) = (distilled, cifarStem)
        plan.initialCheckpoint = try initialCheckpoint.map(BuiltInModel.resolve)
        plan.imageSize = imageSize
        plan.headInit = headInit
        plan.resolveModel = BuiltInModel.resolve
        plan.log = printError
        plan.ranks = try MPIJob.ranks()
        plan.reading = dataReading.reading
        return plan
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
        return try runOptions.recipe(options, flags: Self.flags)
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

/// Two sizes written R,C (a 2-D block shape).
struct SizePair: ExpressibleByArgument {
    let values: [Int]
    init?(argument: String) {
        let parts = argument.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, parts.allSatisfy({ $0 >= 0 }) else { return nil }
        values = parts
    }
    static var defaultValueDescription: String { "ROWS,COLUMNS" }
}
