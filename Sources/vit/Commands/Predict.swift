import ArgumentParser
import Foundation
import Images
import Inference
import Tensors

/// Top-K labels for photos.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images with a ViT checkpoint.",
        discussion:
            "Images and folders (searched recursively for .jpg/.jpeg/.png) are decoded and preprocessed on a background thread while the model runs. A bad image is reported on stderr and skipped; the exit status is 1 if some failed, 2 if all did."
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "How many classes to show per image.") var top = 5
    @Flag(help: "One JSON object per line per image.") var json = false
    @Flag(help: "With --json, include every logit.") var logits = false
    @Option(help: "Images per batch (8: a few files, and little memory for large models; eval takes 256 for a data set).")
    var batchSize = 8
    @Option(name: .customLong("batch"), help: .hidden) var batchAlias: Int?  // the earlier spelling, for one release
    @Flag(inversion: .prefixedNo, help: "Decode and preprocess on a background thread while the model runs.")
    var prefetch = true

    @Argument(help: "Image files or folders.") var images: [String]

    func validate() throws {
        if top < 1 { throw ValidationError("--top must be at least 1") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        let (files, missing) = try imageFiles(images)
        let classifier = try modelOptions.classifier(batchSize: batchAlias ?? batchSize)
        var failures = missing
        let progress = ProgressBar(
            total: files.count, unit: "images",
            enabled: isatty(STDERR_FILENO) != 0 && files.count > ProgressBar.terminalRows)
        let transform = classifier.transform
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        let started = Date()
        var classified = 0
        for batch in BatchLoader(files: files, batchSize: batchAlias ?? batchSize, background: prefetch, transform: { transform($0) }) {
            classified += batch.files.count
            for error in batch.failures { printError("\(progress.enabled ? "\n" : "")error: \(error)") }
            failures += batch.failures.count
            if let tensor = batch.images {
                let output = classifier.logits(tensor)
                let predictions = classifier.top(output, k: top)
                let classes = output.shape[1], values = output.toArray()
                for (row, file) in batch.files.enumerated() {
                    if json {
                        let record = PredictionRecord(
                            file: file.path,
                            top: predictions[row].map { .init(index: $0.index, label: $0.label, probability: $0.probability) },
                            logits: logits ? Array(values[(row * classes)..<((row + 1) * classes)]) : nil)
                        print(String(decoding: try encoder.encode(record), as: UTF8.self))
                    } else {
                        print(file.path)
                        for p in predictions[row] {
                            print("  \(String(format: "%6.2f%%", p.probability * 100))  \(p.label) (\(p.index))")
                        }
                    }
                }
            }
            progress.advance(by: batch.files.count + batch.failures.count)
        }
        let seconds = Date().timeIntervalSince(started)
        printError(
            "classified \(classified) images in \(String(format: "%.2f", seconds)) s (\(String(format: "%.1f", Double(classified) / max(seconds, 1e-9))) images/s)"
        )
        try finish(failed: failures, of: files.count + missing)
    }
}
