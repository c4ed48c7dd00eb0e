import ArgumentParser
import Foundation
import Images
import Inference
import Tensors
import ViT

/// What a checkpoint may not say about its architecture, and the size to build it at (convert, predict, embed,
/// inspect).
struct ArchitectureOptions: ParsableArguments {
    @Option(help: "Preset name for the architecture when the checkpoint has no config.json (e.g. vit_base_patch16_224).")
    var arch: String?

    @Option(help: "Number of attention heads (an .npz does not record it).")
    var heads: Int?

    @Option(name: .customLong("image-size"), help: "Build at this image size (position embeddings resampled).")
    var imageSize: Int?

    var loader: CheckpointLoader { CheckpointLoader(preset: arch, heads: heads, imageSize: imageSize) }
}

/// The options that choose a checkpoint and how images are prepared for it (shared by predict, embed, inspect).
struct ModelOptions: ParsableArguments {
    @Option(help: "Checkpoint folder or weights file (timm / Hugging Face safetensors, JAX .npz, or a vit train/convert folder). Default: the built-in CIFAR-10 ViT.")
    var model: String = BuiltInModel.name

    @OptionGroup var architecture: ArchitectureOptions

    @Option(name: .customLong("crop-pct"), help: "Resize the shorter side to size / crop-pct before the center crop.")
    var cropPct: Float?

    @Option(help: "Resampling filter: bicubic or bilinear.")
    var interpolation: String?

    @Option(help: "Normalisation mean, R,G,B.")
    var mean: String?

    @Option(help: "Normalisation std, R,G,B.")
    var std: String?

    func validate() throws {
        if let interpolation, Resampling.Filter(rawValue: interpolation) == nil {
            throw ValidationError("--interpolation must be bicubic or bilinear, not \(interpolation)")
        }
        for (name, value) in [("mean", mean), ("std", std)] {
            if let value, Self.triple(value) == nil { throw ValidationError("--\(name) takes three numbers R,G,B, got \(value)") }
        }
        if let cropPct, !(cropPct > 0 && cropPct <= 1) { throw ValidationError("--crop-pct must be in (0, 1], got \(cropPct)") }
    }

    static func triple(_ text: String) -> [Float]? {
        let values = text.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
        return values.count == 3 ? values : nil
    }

    func classifier() throws -> Classifier {
        let overrides = PreprocessingOverrides(cropPct: cropPct, interpolation: interpolation.flatMap(Resampling.Filter.init),
                                               mean: mean.flatMap(Self.triple), std: std.flatMap(Self.triple))
        return try Classifier(checkpoint: try BuiltInModel.resolve(model), loader: architecture.loader, overrides: overrides)
    }
}

/// The CIFAR-10 ViT that ships with SwiftViT (trained by `vit train`; see README), used when no --model is given.
/// SwiftPM copies it next to the executable as a resource bundle.
enum BuiltInModel {
    static let name = "builtin:cifar10-vit"

    /// `model` as a file URL; the built-in name maps to the resource folder.
    static func resolve(_ model: String) throws -> URL {
        guard model == name else { return URL(fileURLWithPath: model) }
        guard let url = Bundle.module.url(forResource: "cifar10-vit", withExtension: nil) else {
            throw ValidationError("the built-in model is missing beside this vit executable (its vit_vit.resources folder); pass --model")
        }
        return url
    }
}
