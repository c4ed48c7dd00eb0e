import ArgumentParser
import Checkpoints
import Foundation
import Images
import Inference
import Tensors

/// Features for images, as safetensors.
struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write each image's pre-logits features (or all its tokens) to a safetensors file.",
        discussion:
            "By default one tensor per image, named by its path. With --stack, one tensor 'embeddings' [N, ...] whose row order is the JSON list in the metadata key 'files'."
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .shortAndLong, help: "Output .safetensors file.") var output: String
    @Flag(help: "Every token after the final norm [tokens, D] instead of the pooled features [D].") var tokens = false
    @Flag(help: "One stacked tensor with the file order in the metadata.") var stack = false
    @Option(help: "Images per batch.") var batchSize = 8
    @Option(name: .customLong("batch"), help: .hidden) var batchAlias: Int?  // the earlier spelling, for one release
    @Argument(help: "Image files or folders.") var images: [String]

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        let (files, missing) = try imageFiles(images)
        let classifier = try modelOptions.classifier()
        var failures = missing
        var perImage: [(String, Tensor)] = []
        let progress = ProgressBar(
            total: files.count, unit: "images",
            enabled: isatty(STDERR_FILENO) != 0 && files.count > ProgressBar.terminalRows)
        let transform = classifier.transform
        for batch in BatchLoader(files: files, batchSize: batchAlias ?? batchSize, transform: { transform($0) }) {
            for error in batch.failures { printError("error: \(error)") }
            failures += batch.failures.count
            if let tensor = batch.images {
                let features = try Autograd.withNoGrad {  // [B, N, D] or [B, D]
                    guard tokens else { return classifier.model.classify(tensor).features }
                    guard let vit = classifier.vit else { throw CommandFailure("--tokens needs a ViT; \(modelOptions.model) is a convnet") }
                    return vit.forward(tensor).finalTokens
                }
                for (row, file) in batch.files.enumerated() {
                    perImage.append((file.path, features.slice(axis: 0, start: row, length: 1).squeeze(0).copy()))
                }
            }
            progress.advance(by: batch.files.count + batch.failures.count)
        }
        guard !perImage.isEmpty else { try finish(failed: failures, of: files.count + missing); return }
        let url = URL(fileURLWithPath: output)
        let metadata = ["model": modelOptions.model, "features": tokens ? "tokens" : "pre_logits"]
        if stack {
            let order = String(
                decoding: try JSONSerialization.data(withJSONObject: perImage.map(\.0), options: [.withoutEscapingSlashes]), as: UTF8.self)
            let tensors = perImage.isEmpty ? [:] : ["embeddings": Tensor.stack(perImage.map(\.1))]
            try Safetensors.write(tensors, metadata: metadata.merging(["files": order]) { a, _ in a }, to: url)
        } else {
            try Safetensors.write(Dictionary(perImage, uniquingKeysWith: { a, _ in a }), metadata: metadata, to: url)
        }
        printError("wrote \(perImage.count) embeddings to \(output)")
        try finish(failed: failures, of: files.count + missing)
    }
}
