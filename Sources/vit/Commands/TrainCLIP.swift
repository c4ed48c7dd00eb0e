import ArgumentParser
import CLIP
import Datasets
import Foundation
import Tensors
import Training
import ViT

/// Contrastive image-text training of a CLIP.
struct TrainCLIP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-clip",
        abstract: "Train a CLIP (image and text towers) contrastively on image-caption pairs, from scratch or from a checkpoint.",
        discussion: """
            --data takes image-caption pairs: a JSONL file of {"image": PATH, "caption": TEXT} lines (paths relative to \
            the file; an image on several lines has several captions), or a folder (or .tar.gz) where each image has a \
            .txt of the same name beside it (each line a caption), or WebDataset shards of KEY.jpg and KEY.txt (a folder \
            of .tar files or a list such as data/{000000..000099}.tar), streamed: decoded batch by batch. Or a labelled data set (as vit train reads) with \
            --caption-templates: each training image is captioned with every template ({} = its class name), and \
            each step draws one caption per image; after every epoch the test part is classified zero-shot with \
            --templates, and the top-1 goes to metrics.jsonl and curves.png. The recipe is open_clip's: AdamW (betas \
            0.9, 0.98, eps 1e-6, weight decay 0.2 on weights), warm-up then cosine, CLIP's symmetric cross-entropy \
            with a learned temperature clamped at 100. A new model is CLIPConfig.small (image tower: patch 4, width \
            192, 6 blocks; text: width 128, 4 blocks, 32 tokens; embeddings 128) unless the options change it; --init \
            starts from a CLIP folder instead, and --image-init starts the image tower from a ViT (e.g. a vit pretrain run). OUTPUT is an open_clip folder after every epoch (vit zeroshot \
            --model OUTPUT reads it) with checkpoint.safetensors, metrics.jsonl and curves.png. Ctrl-C or SIGTERM \
            saves a checkpoint and exits (130 / 143); run again with --resume to continue exactly.
            """
    )
    private static let defaults = ContrastiveOptions()

    @Option(help: "Image-caption pairs, or a labelled data set with --caption-templates (see above).") var data: String
    @Option(help: "Caption a labelled --data from templates: cifar10 (18), imagenet (80), or a file of templates with {} for the class.")
    var captionTemplates: String?
    @Option(help: "Zero-shot prompt templates for the test part of a labelled --data: cifar10, imagenet, or a file.")
    var templates = "cifar10"
    @Option(help: "Start from this CLIP (an open_clip or Hugging Face CLIPModel folder) instead of a new one.") var `init`: String?
    @Option(
        help:
            "Start a new CLIP's image tower from this ViT (a vit train or vit pretrain run, or any ViT checkpoint with a class token); its shape and normalisation follow the ViT."
    )
    var imageInit: String?
    @Option(help: "Input size in pixels; images are resized to it when loaded (default: the data's size when uniform, else 224).")
    var imageSize: Int?
    @Option(help: "Image tower: patch size.") var patchSize = CLIPConfig.small().patchSize
    @Option(help: "Image tower: token width.") var width = CLIPConfig.small().visionWidth
    @Option(help: "Image tower: blocks.") var depth = CLIPConfig.small().visionLayers
    @Option(help: "Image tower: attention heads.") var heads = CLIPConfig.small().visionWidth / CLIPConfig.small().visionHeadWidth
    @Option(help: "Text tower: token width.") var textWidth = CLIPConfig.small().textWidth
    @Option(help: "Text tower: blocks.") var textDepth = CLIPConfig.small().textLayers
    @Option(help: "Text tower: attention heads.") var textHeads = CLIPConfig.small().textHeads
    @Option(help: "Text tower: tokens per caption, with start and end (longer captions are cut).") var contextLength = CLIPConfig.small()
        .contextLength
    @Option(help: "Width of the shared image-text embedding.") var embedDim = CLIPConfig.small().embedDim
    @Flag(help: "Read JSONL image paths outside the JSONL file's folder (refused unless given).") var allowOutsidePaths = false
    @OptionGroup var runOptions: RunOptions<ContrastiveOptions>
    @OptionGroup var dataReading: DataReadingOptions
    @OptionGroup var imageLimit: ImageLimitOptions

    /// The flag of each CLIPConfig field.
    static let flags = [
        "patchSize": "--patch-size", "visionWidth": "--width", "visionLayers": "--depth", "visionHeadWidth": "--width / --heads",
        "textWidth": "--text-width", "textLayers": "--text-depth", "textHeads": "--text-heads", "contextLength": "--context-length",
        "embedDim": "--embed-dim", "imageSize": "--image-size"
    ]

    /// A new CLIP's configuration from the flags at `imageSize`.
    func newConfig(imageSize: Int) -> CLIPConfig {
        var config = CLIPConfig.small(imageSize: imageSize)
        (config.patchSize, config.visionWidth, config.visionLayers) = (patchSize, width, depth)
        config.visionHeadWidth = heads > 0 ? width / heads : 0
        (config.textWidth, config.textLayers, config.textHeads, config.contextLength) = (textWidth, textDepth, textHeads, contextLength)
        config.embedDim = embedDim
        return config
    }

    /// The towers' sizes, checked by the library's CLIPConfig.validate before any data is read (the image size is
    /// the data's, so a patch-sized stand-in is checked here).
    func validate() throws {
        if let imageSize, imageSize < 1 { throw ValidationError("--image-size must be at least 1") }
        if heads < 1 || width % heads != 0 { throw ValidationError("--width \(width) is not a multiple of --heads \(heads)") }
        do { try newConfig(imageSize: imageSize ?? max(patchSize, 1)).validate() } catch let problem as FieldProblem {
            throw ValidationError(problem.described(naming: Self.flags))
        }
    }

    func run() throws {
        imageLimit.apply()
        try runOptions.train(files: "open_clip_config.json, open_clip_model.safetensors, metrics.jsonl, curves.png") {
            runOptions.resume ? try resumed($0) : try newRun($0)
        }
    }

    /// The pairs, and the held-out labelled images of a labelled --data.
    func loadData(sizing: ImageSizing) throws -> (any CaptionedImages, ContrastiveTrainer.ZeroShotEvaluation?) {
        printError("reading \(data) ...")
        let started = Date()
        let url = URL(fileURLWithPath: data)
        if captionTemplates == nil, try WebDataset.shardParts(data) != nil {
            guard case .streamed(let stream)? = try dataReading.reading.load(data, parts: [.train], sizing: sizing, needs: .caption)[.train]
            else { throw CommandFailure("\(data) has no training shards") }
            printError(
                "\(stream.count) captioned images of \(stream.width)x\(stream.height), \(stream.readingSummary) (\(String(format: "%.1f", Date().timeIntervalSince(started))) s)"
            )
            return (stream, nil)
        }
        let pairs: ImageCaptions
        var evaluation: ContrastiveTrainer.ZeroShotEvaluation?
        if let captionTemplates {
            let captionSet = try PromptTemplates.named(captionTemplates)
            let parts = try ImageDataset.load(url, parts: [.train, .test], sizing: sizing)
            guard let train = parts[.train] else { throw CommandFailure("\(data) has no training images to caption") }
            for failure in train.failures { printError("skipped: \(failure)") }
            pairs = ImageCaptions.fromClasses(train, templates: captionSet)
            if let test = parts[.test] {
                evaluation = .init(images: test, templates: try PromptTemplates.named(templates))
            }
        } else {
            pairs = try ImageCaptions.load(url, sizing: sizing, pathsOutside: allowOutsidePaths)
            for failure in pairs.images.failures { printError("skipped: \(failure)") }
        }
        let captionCount = pairs.captions.reduce(0) { $0 + $1.count }
        printError(
            "\(pairs.count) images of \(pairs.images.width)x\(pairs.images.height) with \(captionCount) captions"
                + (evaluation.map { ", \($0.images.count) held out for zero-shot" } ?? "")
                + " (\(String(format: "%.1f", Date().timeIntervalSince(started))) s)")
        return (pairs, evaluation)
    }

    func newRun(_ folder: URL) throws -> ContrastiveTrainer {
        try runOptions.checkNewRun()
        let options = try runOptions.recipe(ContrastiveOptions())

        if `init` != nil && imageInit != nil { throw CommandFailure("--init and --image-init exclude each other") }
        let start = try `init`.map { try CLIPModel.load(try BuiltInModel.resolve($0)) }
        let encoder = try imageInit.map { path -> VisionTransformer in
            guard let vit = try CheckpointLoader().loadModel(try BuiltInModel.resolve(path)) as? VisionTransformer else {
                throw CommandFailure("--image-init \(path): not a ViT (a convnet cannot start CLIP's image tower)")
            }
            return vit
        }
        let sizing: ImageSizing =
            (imageSize ?? start?.config.imageSize ?? encoder?.config.imageSize).map { .size($0) } ?? .nativeIfUniform(fallback: 224)
        var (pairs, evaluation) = try loadData(sizing: sizing)
        let images = pairs.trainingImages
        guard images.width == images.height else {
            throw CommandFailure("CLIP training needs square images, the data has \(images.width)x\(images.height): give --image-size")
        }
        GlobalRandom.seed(options.seed)
        let model: CLIPModel
        if let start {
            model = start
            model.train()
            for parameter in model.parameters() { parameter.requiresGrad = true }
        } else {
            var config = newConfig(imageSize: images.width)
            (config.mean, config.std) = try images.channelStatistics()
            if let encoder {
                do { config = try config.withImageTower(of: encoder.config) } catch { throw CommandFailure("--image-init: \(error)") }
                guard config.imageSize == images.width else {
                    throw CommandFailure("--image-init: the ViT takes \(config.imageSize) px images, the data is \(images.width) px")
                }
            }
            do { try config.validate() } catch let problem as FieldProblem {
                throw CommandFailure("at \(config.imageSize) px: \(problem.described(naming: Self.flags))")
            }
            model = CLIPModel(config)
            if let encoder {
                do { try model.loadImageTower(from: encoder.stateDict()) } catch { throw CommandFailure("--image-init: \(error)") }
                printError(
                    "image tower from \(imageInit!): patch embedding, class token, positions, \(config.visionLayers) blocks, final norm")
            }
        }
        if evaluation != nil, evaluation!.images.width != model.config.imageSize { evaluation = nil }
        let tokenizer =
            try `init`.map { try CLIPTokenizer.forModel(in: try BuiltInModel.resolve($0), vocabularySize: model.config.vocabSize) }
            ?? CLIPTokenizer.openAI()
        let trainer = try ContrastiveTrainer(
            model: model, tokenizer: tokenizer, options: options, data: pairs, evaluation: evaluation, folder: folder)
        let c = model.config
        printError(
            "CLIP at \(c.imageSize) px: image tower patch \(c.patchSize) width \(c.visionWidth) x \(c.visionLayers), text width \(c.textWidth) x \(c.textLayers) over \(c.contextLength) tokens, embeddings \(c.embedDim); \(model.parameterCount) parameters; \(options.epochs) epochs of \(trainer.stepsPerEpoch) steps"
        )
        return trainer
    }

    func resumed(_ folder: URL) throws -> ContrastiveTrainer {
        let checkpoint = folder.appendingPathComponent("checkpoint.safetensors")
        guard FileManager.default.fileExists(atPath: checkpoint.path) else {
            throw CommandFailure("\(checkpoint.path): no such file: no contrastive training run to resume in \(runOptions.output)")
        }
        let config = try CLIPModel.load(folder).config
        let (pairs, evaluation) = try loadData(sizing: .size(config.imageSize))
        let trainer = try ContrastiveTrainer.resume(
            folder: folder, tokenizer: try CLIPTokenizer.forModel(in: folder, vocabularySize: config.vocabSize), data: pairs,
            evaluation: evaluation,
            epochs: runOptions.epochs,
            precision: runOptions.precision)
        printError("resuming at epoch \(trainer.state.epoch + 1), batch \(trainer.state.batch + 1) of \(trainer.stepsPerEpoch)")
        ResumedRun.noteUnusedOptions(used: ["--caption-templates", "--templates"], changeable: ["--epochs", "--precision"])
        return trainer
    }
}
