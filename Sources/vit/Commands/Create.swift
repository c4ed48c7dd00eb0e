import ArgumentParser
import Foundation
import Tensors
import ViT

/// A freshly initialised model from a preset, saved as a native folder (a starting point for training, or a
/// stand-in model for speed measurements).
struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a randomly initialised ViT from a preset as a checkpoint folder.",
        discussion: "Presets: \(ViTConfig.presetNames.joined(separator: ", "))"
    )

    @Option(help: "Architecture preset, e.g. vit_small_patch16_224.") var arch: String
    @Option(name: .customLong("num-classes"), help: "Number of classes (default: the preset's).") var numClasses: Int?
    @Option(help: "Random seed for the initialisation.") var seed: UInt64 = 0
    @Option(name: .shortAndLong, help: "Output folder.") var output: String

    func run() throws {
        var config = try ViTConfig.preset(arch)
        if let numClasses { config.numClasses = numClasses }
        GlobalRandom.seed(seed)
        let model = try VisionTransformer(config)
        try NativeFormat.save(model, to: URL(fileURLWithPath: output), architecture: arch)
        print("wrote \(output): \(arch), \(model.parameterCount) parameters, random weights (seed \(seed))")
    }
}
