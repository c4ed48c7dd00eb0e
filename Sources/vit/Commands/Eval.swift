import ArgumentParser
import CLIP
import Datasets
import Foundation
import Images
import Plots
import Tensors
import Training
import ViT

/// Accuracy of a trained classifier on a labelled set.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a classifier on labelled data: top-1, top-5, per-class accuracy and the confusion matrix.",
        discussion:
            "--data takes the same layouts as vit train; with --zeroshot, --model is a CLIP (open_clip or Hugging Face CLIPModel folder) and the class folder names, in prompts from --templates, are the classes. The test part is used when there is one (--part train for the training part; a folder of only <class>/ folders is scored whole). Images of any size are brought to the model's input as timm's evaluation transform does (shorter side to size / crop-pct, centre crop). The confusion matrix is printed and drawn to confusion.png in --output (default: the model folder, or the current folder)."
    )

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "What the model does: classification, or detection (a DETR --model, COCO-format --data or --annotations).")
    var task: ModelTask = .classification
    @Option(
        help:
            "Labelled data (see vit train); for --task detection a folder with instances_val.json (or instances_<part>.json) beside its images."
    )
    var data: String?
    @Option(help: "With --task detection: a COCO annotation file to score --detections against (no model is run).")
    var annotations: String?
    @Option(help: "With --task detection and --annotations: a COCO results file (a JSON array of image_id, category_id, bbox, score).")
    var detections: String?
    @Option(help: "Which part of --data.") var part: DataPart = .test
    @Option(help: "Images per batch (256: a data set is scored in large batches; predict and embed take 8, a few files at a time).")
    var batchSize = 256
    @Option(
        name: .shortAndLong,
        help: "Folder for confusion.png (default: the model folder, or the current folder for the built-in model or a weights file).")
    var output: String?
    @Flag(
        help:
            "Print one JSON object: top1, top5, count, loss, per_class, confusion (and class_head_top1, distillation_head_top1 for a distilled model)."
    )
    var json = false
    @Flag(help: "Classify zero-shot with a CLIP --model (open_clip or Hugging Face folder): the classes are the data's class folder names.")
    var zeroshot = false
    @Option(help: "With --zeroshot, the prompt templates: cifar10 (18), imagenet (80), or a file of templates with {} for the class.")
    var templates = "imagenet"
    @Flag(
        help:
            "With --task generation, instead of a --model: the bits/dim of a per-position independent categorical fitted to --data's training part (the sanity line a generative model must beat)."
    )
    var baseline = false
    @OptionGroup var dataReading: DataReadingOptions

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        switch task {
        case .generation:
            if data == nil {
                throw ValidationError("--task generation scores --data's test part with an Image Transformer --model (or --baseline)")
            }
            if annotations != nil || detections != nil || zeroshot {
                throw ValidationError("--annotations, --detections and --zeroshot are not for --task generation")
            }
        case .classification:
            if data == nil { throw ValidationError("--data is required (the labelled images to score)") }
            if annotations != nil || detections != nil { throw ValidationError("--annotations and --detections are for --task detection") }
        case .detection:
            if (annotations == nil) != (detections == nil) { throw ValidationError("--annotations and --detections go together") }
            if annotations == nil && data == nil {
                throw ValidationError("--task detection scores --data with a DETR --model, or a --detections file against --annotations")
            }
            if zeroshot { throw ValidationError("--zeroshot is for classification") }
        }
    }

    /// The labelled part of --data (in memory, or streamed when it does not fit), each image brought to the model's
    /// input as `transform` does.
    /// `skipped` counts the samples a stream skips (a set in memory lists its failures instead).
    func loadData(_ transform: EvalTransform, skipped: Counter) throws -> any TrainingImages {
        let sizing = ImageSizing.resize(.init(size: transform.size, cropPct: transform.cropPct, filter: transform.filter))
        let data = self.data ?? ""  // validate() requires it for classification
        var reading = dataReading.reading
        reading.log = { line in
            if line.hasPrefix("skipped:") { skipped.add() }
            printError(line)
        }
        let loaded = try reading.load(data, parts: [part], sizing: sizing, needs: .label)
        guard let dataset = loaded[part]?.images else { throw CommandFailure("\(data) has no \(part) part") }
        for failure in (dataset as? ImageDataset)?.failures ?? [] { printError("skipped: \(failure)") }
        if !(dataset is ImageDataset) { printError("\(dataset.count) images, \(dataset.readingSummary)") }
        return dataset
    }

    func run() throws {
        if task == .detection { return try evaluateDetection() }
        if task == .generation { return try evaluateGeneration() }
        let data = self.data ?? ""
        let dataset: any TrainingImages
        let streamSkipped = Counter()
        let bar: ProgressBar
        var done = 0
        let started: Date
        let result: Evaluation
        if zeroshot {
            let folder = try BuiltInModel.resolve(modelOptions.model)
            let clip = try CLIPModel.load(folder)
            try clip.config.checkMemory(batchSize: batchSize)
            let tokenizer = try CLIPTokenizer.forModel(in: folder, vocabularySize: clip.config.vocabSize)
            let prompts = try PromptTemplates.named(templates)
            dataset = try loadData(clip.transform, skipped: streamSkipped)
            bar = ProgressBar(total: dataset.count, unit: "img")
            started = Date()
            result = try Evaluation.zeroShot(clip, tokenizer: tokenizer, templates: prompts, on: dataset, batchSize: batchSize) { count in
                bar.advance(by: count - done)
                done = count
            }
        } else {
            let classifier = try modelOptions.classifier(batchSize: batchSize)
            let network = classifier.model, config = network.architecture
            let transform = classifier.transform
            dataset = try loadData(transform, skipped: streamSkipped)
            guard config.numClasses == dataset.classNames.count else {
                throw CommandFailure("the model has \(config.numClasses) classes, \(data) has \(dataset.classNames.count)")
            }
            // Labels are indices into the data's (sorted) class names; say so when the model names them otherwise.
            if let labels = config.labels, labels != dataset.classNames {
                printError("note: the model's class names \(labels) differ from the data's \(dataset.classNames); scoring by index")
            }
            bar = ProgressBar(total: dataset.count, unit: "img")
            started = Date()
            result = try Evaluation.run(network, on: dataset, batchSize: batchSize, mean: transform.mean, std: transform.std) { count in
                bar.advance(by: count - done)
                done = count
            }
        }
        let classNames = dataset.classNames
        let seconds = Date().timeIntervalSince(started)
        var isDirectory: ObjCBool = false
        let model = modelOptions.model
        let modelIsFolder =
            model != BuiltInModel.name && FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory) && isDirectory.boolValue
        let folder = URL(fileURLWithPath: output ?? (modelIsFolder ? model : "."))
        let png = folder.appendingPathComponent("confusion.png")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try PNG.write(TrainingFigures.confusionMatrix(result.confusion, classNames: classNames), to: png)
        if json {
            print(result.json())
        } else {
            print(
                String(
                    format: "top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%d images)", result.top1 * 100, result.top5 * 100, result.loss,
                    result.count))
            if let classHead = result.classHeadTop1, let distillationHead = result.distillationHeadTop1 {
                print(
                    String(
                        format:
                            "top-1 of the class head alone %.2f%%, of the distillation head alone %.2f%% (above: their average, as DeiT evaluates)",
                        classHead * 100, distillationHead * 100))
            }
            print("per class:")
            for (name, accuracy) in zip(classNames, result.perClass) { print(String(format: "  %6.2f%%  ", accuracy * 100) + name) }
            print("confusion matrix (rows: true class, columns: predicted):")
            print(result.confusionText())
        }
        printError(
            String(
                format: "evaluated %d images in %.1f s (%.0f images/s); wrote ", result.count, seconds,
                Double(result.count) / max(seconds, 1e-9)) + png.path)
        let failed = (dataset as? ImageDataset)?.failures.count ?? streamSkipped.count
        if failed > 0 { try finish(failed: failed, of: result.count + failed) }
    }
}

/// A count kept from several threads.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func add() { lock.withLock { value += 1 } }
    var count: Int { lock.withLock { value } }
}
