import ArgumentParser
import CLIP
import Foundation
import Images
import Inference
import Tensors

/// CLIP's zero-shot classification: classes named in text, no training.
struct ZeroShot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zeroshot",
        abstract: "Classify images into classes named in text with a CLIP model (no training): prompt ensembling, as CLIP's paper.",
        discussion: """
            --model takes an open_clip folder (open_clip_config.json + open_clip_model.safetensors or \
            open_clip_pytorch_model.bin) or a Hugging Face CLIPModel folder (config.json + model.safetensors); the tokenizer comes from the folder (bpe_simple_vocab_16e6.txt.gz, or \
            vocab.json + merges.txt), else the one shipped with vit. Each class's text embedding is the renormalised \
            mean of its templates' normalised embeddings; logits are 100 x the normalised image embedding . each \
            class's.
            """
    )
    @Option(help: "The CLIP model folder.") var model: String
    @Option(help: "Class names, comma-separated.") var classes: String?
    @Option(help: "A file of class names, one per line.") var classesFile: String?
    @Option(help: "Prompt templates: cifar10 (18), imagenet (80), or a file of templates with {} for the class.")
    var templates = "imagenet"
    @Option(help: "How many classes to show per image.") var top = 5
    @Option(help: "Images per batch (as vit predict).") var batchSize = 8
    @Option(
        help:
            "Compute precision (default: fp32, as CLIP was published; bf16 runs the towers' matrix products in bfloat16, as train-clip --precision bf16); int8 runs the linear layers as int8 products (dynamic quantisation, inference only)."
    )
    var precision: Precision?
    @Flag(help: "One JSON object per line per image.") var json = false
    @OptionGroup var imageLimit: ImageLimitOptions
    @Argument(help: "Image files or folders.") var images: [String]

    func validate() throws {
        if (classes == nil) == (classesFile == nil) { throw ValidationError("give the classes: --classes a,b,c or --classes-file FILE") }
        if top < 1 { throw ValidationError("--top must be at least 1") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func classNames() throws -> [String] {
        let names: [String]
        if let classes {
            names = classes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        } else {
            guard let text = try? String(contentsOfFile: classesFile!, encoding: .utf8) else {
                throw CommandFailure("\(classesFile!): cannot be read")
            }
            names = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let kept = names.filter { !$0.isEmpty }
        guard kept.count >= 2 else { throw CommandFailure("zero-shot classification needs at least two class names, got \(kept.count)") }
        return kept
    }

    func run() throws {
        imageLimit.apply()
        let names = try classNames()
        let folder = try BuiltInModel.resolve(model)
        let clip = try CLIPModel.load(folder)
        try clip.config.checkMemory(batchSize: batchSize)
        let tokenizer = try CLIPTokenizer.forModel(in: folder, vocabularySize: clip.config.vocabSize)
        let prompts = try PromptTemplates.named(templates)
        let classifier = ZeroShotClassifier(model: clip, tokenizer: tokenizer, classNames: names, templates: prompts)
        let (files, missing) = try imageFiles(images)
        let (chosen, why) = Precision.decide(asked: precision, default: .fp32)
        printError("precision: \(chosen) (\(why))")
        chosen.quantize(clip)
        var failed = missing
        let transform = clip.transform
        for batch in BatchLoader(files: files, batchSize: batchSize, transform: { transform($0) }) {
            for error in batch.failures { printError("error: \(error)") }
            failed += batch.failures.count
            guard let input = batch.images else { continue }
            let logits = Autocast.run(chosen.dtype) { classifier.logits(input) }.cast(to: .float32)  // [B, classes]
            let probabilities = Autograd.withNoGrad { logits.softmax() }.toArray()
            for (row, file) in batch.files.enumerated() {
                let own = Array(probabilities[(row * names.count)..<((row + 1) * names.count)])
                let ranked = own.indices.sorted { own[$0] > own[$1] }.prefix(min(top, names.count))
                if json {
                    let record: [String: Any] = [
                        "file": file.path,
                        "top": ranked.map { ["label": names[$0], "index": $0, "probability": Double(own[$0])] as [String: Any] }
                    ]
                    print(
                        String(
                            decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys, .withoutEscapingSlashes]),
                            as: UTF8.self))
                } else {
                    print(file.path)
                    for i in ranked { print(String(format: "  %6.2f%%  %@", own[i] * 100, names[i])) }
                }
            }
        }
        try finish(failed: failed, of: files.count + missing)
    }
}

/// CLIP's tokenizer on the command line.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "CLIP token ids of texts: 77 per text with start, end and zero padding, as open_clip.tokenize.")
    @Option(help: "A CLIP model folder whose tokenizer to use (default: OpenAI's, shipped with vit).") var model: String?
    @Flag(help: "One JSON object per line: {\"text\", \"ids\"}.") var json = false
    @Argument(help: "Texts.") var texts: [String]

    func run() throws {
        let tokenizer =
            try model.map { try CLIPTokenizer.forModel(in: try BuiltInModel.resolve($0), vocabularySize: nil) } ?? CLIPTokenizer.openAI()
        for text in texts {
            let ids = tokenizer.tokenize(text)
            if json {
                print(
                    String(
                        decoding: try JSONSerialization.data(
                            withJSONObject: ["text": text, "ids": ids] as [String: Any], options: [.sortedKeys]), as: UTF8.self))
            } else {
                print(ids.map(String.init).joined(separator: " "))
            }
        }
    }
}
