import ArgumentParser
import CLIP
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
            "By default one tensor per image, named by its path. With --stack, one tensor 'embeddings' [N, ...] whose row order is the JSON list in the metadata key 'files'. With a CLIP --model (an open_clip or Hugging Face CLIPModel folder) the embeddings are CLIP's image embeddings (projected, before normalisation), or with --text / --text-file its text embeddings, named by their text (with --stack, the order is the metadata key 'texts')."
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .shortAndLong, help: "Output .safetensors file.") var output: String
    @Flag(help: "Every token after the final norm [tokens, D] instead of the pooled features [D].") var tokens = false
    @Flag(help: "One stacked tensor with the file order in the metadata.") var stack = false
    @Option(help: "Images per batch (8, as predict).") var batchSize = 8
    @Option(name: .customLong("batch"), help: .hidden) var batchAlias: Int?  // the earlier spelling, for one release
    @Option(parsing: .upToNextOption, help: "Texts to embed with a CLIP --model, instead of images.") var text: [String] = []
    @Option(help: "A file of texts (one per line) to embed with a CLIP --model, instead of images.") var textFile: String?
    @Argument(help: "Image files or folders.") var images: [String] = []

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        let texts = !text.isEmpty || textFile != nil
        if texts == !images.isEmpty { throw ValidationError("give images, or texts with --text / --text-file (not both)") }
    }

    /// The texts of --text and --text-file, in that order.
    func texts() throws -> [String] {
        guard let textFile else { return text }
        guard let contents = try? String(contentsOfFile: textFile, encoding: .utf8) else {
            throw CommandFailure(
                "\(textFile): \(FileManager.default.fileExists(atPath: textFile) ? "cannot be read as UTF-8 text" : "no such file")")
        }
        return text
            + contents.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    }

    func run() throws {
        let modelFolder = try BuiltInModel.resolve(modelOptions.model)
        if CLIPModel.isCLIPFolder(modelFolder) {
            try runCLIP(modelFolder)
            return
        }
        if !text.isEmpty || textFile != nil {
            throw CommandFailure("--text and --text-file need a CLIP --model (an open_clip or Hugging Face CLIPModel folder)")
        }
        let (files, missing) = try imageFiles(images)
        let classifier = try modelOptions.classifier(batchSize: batchAlias ?? batchSize)
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
                    return vit.forwardFeatures(tensor)
                }
                for (row, file) in batch.files.enumerated() {
                    perImage.append((file.path, features.slice(axis: 0, start: row, length: 1).squeeze(0).copy()))
                }
            }
            progress.advance(by: batch.files.count + batch.failures.count)
        }
        guard !perImage.isEmpty else { try finish(failed: failures, of: files.count + missing); return }
        try write(perImage, features: tokens ? "tokens" : "pre_logits", orderKey: "files")
        try finish(failed: failures, of: files.count + missing)
    }

    /// One tensor per name, or with --stack one 'embeddings' tensor and the names' order under `orderKey`.
    func write(_ named: [(String, Tensor)], features: String, orderKey: String) throws {
        let url = URL(fileURLWithPath: output)
        let metadata = ["model": modelOptions.model, "features": features]
        if stack {
            let order = String(
                decoding: try JSONSerialization.data(withJSONObject: named.map(\.0), options: [.withoutEscapingSlashes]), as: UTF8.self)
            let tensors = named.isEmpty ? [:] : ["embeddings": Tensor.stack(named.map(\.1))]
            try Safetensors.write(tensors, metadata: metadata.merging([orderKey: order]) { a, _ in a }, to: url)
        } else {
            try Safetensors.write(Dictionary(named, uniquingKeysWith: { a, _ in a }), metadata: metadata, to: url)
        }
        printError("wrote \(named.count) embeddings to \(output)")
    }

    /// CLIP's image embeddings of the images, or its text embeddings of the texts (projected, not normalised).
    func runCLIP(_ folder: URL) throws {
        modelOptions.imageLimit.apply()
        let clip = try CLIPModel.load(folder)
        // CLIP embeds in fp32 (as open_clip), or with int8 linear layers when asked.
        if modelOptions.precision == .int8 { Precision.int8.quantize(clip) }
        if tokens { throw CommandFailure("--tokens is for ViT classifiers; a CLIP gives one embedding per image or text") }
        let size = batchAlias ?? batchSize
        try clip.config.checkMemory(batchSize: size)
        if !text.isEmpty || textFile != nil {
            let tokenizer = try CLIPTokenizer.forModel(in: folder, vocabularySize: clip.config.vocabSize)
            let all = try texts()
            var named: [(String, Tensor)] = []
            for start in stride(from: 0, to: all.count, by: size) {
                let chunk = Array(all[start..<min(start + size, all.count)])
                let ids = chunk.map { tokenizer.tokenize($0, contextLength: clip.config.contextLength) }
                let embeddings = Autograd.withNoGrad { clip.encodeText(ids) }  // [T, E]
                for (row, text) in chunk.enumerated() {
                    named.append((text, embeddings.slice(axis: 0, start: row, length: 1).squeeze(0).copy()))
                }
            }
            try write(named, features: "text_embeds", orderKey: "texts")
            return
        }
        let (files, missing) = try imageFiles(images)
        var failures = missing
        var named: [(String, Tensor)] = []
        let transform = clip.transform
        for batch in BatchLoader(files: files, batchSize: size, transform: { transform($0) }) {
            for error in batch.failures { printError("error: \(error)") }
            failures += batch.failures.count
            guard let tensor = batch.images else { continue }
            let embeddings = Autograd.withNoGrad { clip.encodeImage(tensor) }  // [B, E]
            for (row, file) in batch.files.enumerated() {
                named.append((file.path, embeddings.slice(axis: 0, start: row, length: 1).squeeze(0).copy()))
            }
        }
        if !named.isEmpty { try write(named, features: "image_embeds", orderKey: "files") }
        try finish(failed: failures, of: files.count + missing)
    }
}
