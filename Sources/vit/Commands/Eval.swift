import ArgumentParser
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
        discussion: "--data takes the same layouts as vit train; the test part is used when there is one (--part train for the training part). The confusion matrix is printed and drawn to confusion.png in --out (default: the model folder)."
    )

    @Option(help: "Checkpoint folder (from vit train) or weights file.") var model: String
    @OptionGroup var architecture: ArchitectureOptions
    @Option(help: "Labelled data (see vit train).") var data: String
    @Option(help: "Which part of --data: test or train.") var part = "test"
    @Option(name: .customLong("batch-size"), help: "Images per batch.") var batchSize = 256
    @Option(help: "Folder for confusion.png (default: the model folder, or the current folder for a weights file).")
    var out: String?
    @Flag(help: "Print one JSON object: top1, top5, count, loss, per_class, confusion.") var json = false

    func run() throws {
        guard let dataPart = DataPart(rawValue: part) else { throw ValidationError("--part must be test or train") }
        let modelURL = URL(fileURLWithPath: model)
        let network = try architecture.loader.load(modelURL)
        let loaded = try ImageDataset.load(URL(fileURLWithPath: data), parts: [dataPart])
        guard let dataset = loaded[dataPart] else { throw ValidationError("\(data) has no \(part) part") }
        for failure in dataset.failures { printError("skipped: \(failure)") }
        let config = network.config
        guard dataset.width == config.imageSize && dataset.height == config.imageSize else {
            throw ValidationError("the model takes \(config.imageSize)x\(config.imageSize) images, \(data) has \(dataset.width)x\(dataset.height)")
        }
        guard config.numClasses == dataset.classNames.count else {
            throw ValidationError("the model has \(config.numClasses) classes, \(data) has \(dataset.classNames.count)")
        }
        // Labels are indices into the data's (sorted) class names; say so when the model names them otherwise.
        if let labels = config.labels, labels != dataset.classNames {
            printError("note: the model's class names \(labels) differ from the data's \(dataset.classNames); scoring by index")
        }
        let classNames = dataset.classNames
        let bar = ProgressBar(total: dataset.count, unit: "img")
        var done = 0
        let started = Date()
        let result = Evaluation.run(network, on: dataset, batchSize: batchSize, mean: config.data.mean, std: config.data.std) { count in
            bar.advance(by: count - done)
            done = count
        }
        let seconds = Date().timeIntervalSince(started)
        var isDirectory: ObjCBool = false
        let modelIsFolder = FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory) && isDirectory.boolValue
        let folder = URL(fileURLWithPath: out ?? (modelIsFolder ? model : "."))
        let png = folder.appendingPathComponent("confusion.png")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try PNG.write(TrainingFigures.confusionMatrix(result.confusion, classNames: classNames), to: png)
        if json {
            print(result.json())
        } else {
            print(String(format: "top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%d images)", result.top1 * 100, result.top5 * 100, result.loss, result.count))
            print("per class:")
            for (name, accuracy) in zip(classNames, result.perClass) { print(String(format: "  %6.2f%%  ", accuracy * 100) + name) }
            print("confusion matrix (rows: true class, columns: predicted):")
            print(result.confusionText())
        }
        printError(String(format: "evaluated %d images in %.1f s (%.0f images/s); wrote ", result.count, seconds,
                          Double(result.count) / max(seconds, 1e-9)) + png.path)
    }
}
