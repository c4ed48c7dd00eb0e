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
    @Option(help: "Checkpoint folder or weights file (timm / Hugging Face safetensors, JAX .npz, or a vit convert folder).")
    var model: String

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
        return try Classifier(checkpoint: URL(fileURLWithPath: model), loader: architecture.loader, overrides: overrides)
    }
}
