import ArgumentParser
import Foundation
import Training
import ViT

/// Any checkpoint SwiftViT reads -> a native folder (model.safetensors + config.json) that timm can load too.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a timm, Hugging Face, JAX (.npz) or PyTorch (.pth) checkpoint into a SwiftViT/timm folder."
    )

    @Argument(help: "Checkpoint folder or weights file (.safetensors, .npz, .pth/.pt/.bin/.ckpt).")
    var input: String

    @Option(name: .shortAndLong, help: "Output folder (model.safetensors and config.json are written there).")
    var output: String

    @OptionGroup var architecture: ArchitectureOptions

    @Option(help: "From a vit train folder's checkpoint: the raw optimiser weights or the ema average.")
    var weights: Trainer.SavedWeights?

    func validate() throws {
        if weights != nil, architecture.arch != nil || architecture.heads != nil || architecture.imageSize != nil {
            throw ValidationError(
                "--weights exports a vit train folder as it was trained; --arch, --heads and --image-size do not apply (convert the exported folder again to change its size)"
            )
        }
    }

    func run() throws {
        if let weights {
            try Trainer.exportWeights(ofRunIn: URL(fileURLWithPath: input), weights, to: URL(fileURLWithPath: output))
            print("wrote \(output): the \(weights) weights of the run in \(input)")
            return
        }
        let model = try architecture.loader.load(try BuiltInModel.resolve(input))
        try NativeFormat.save(model, to: URL(fileURLWithPath: output), architecture: architecture.arch)
        let c = model.config
        print(
            "wrote \(output): \(c.depth) blocks, width \(c.width), \(c.heads) heads, patch \(c.patchSize), image \(c.imageSize), \(c.numClasses) classes, \(model.parameterCount) parameters"
        )
    }
}
