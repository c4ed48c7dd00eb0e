import ArgumentParser
import Foundation
import Tensors
import ViT

/// Inference speed of a whole ViT built from a preset with random weights.
struct ModelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Milliseconds per batch and images per second of a preset ViT's forward pass (random weights)."
    )

    @Option(help: "Preset name, e.g. vit_base_patch16_224.") var preset = "vit_base_patch16_224"
    @Option(help: "Images per batch.") var batch = 1
    @Option(help: "Minimum seconds of timed runs.") var seconds: Double = 3
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        GlobalRandom.seed(0)
        let config = try ViTConfig.preset(preset)
        let model = try VisionTransformer(config)
        model.eval()
        var rng = SeededGenerator(seed: 1)
        let images = Tensor.randn([batch, config.channels, config.imageSize, config.imageSize], using: &rng)
        let perBatch = Autograd.withNoGrad {
            medianSeconds(warmup: 2, minimumRuns: 5, minimumSeconds: seconds) { _ = model(images) }
        }
        let rate = Double(batch) / perBatch
        if json {
            print("{\"preset\": \"\(preset)\", \"batch\": \(batch), \"ms_per_batch\": \(format(perBatch * 1e3, 2)), \"images_per_second\": \(format(rate, 1))}")
        } else {
            print("\(preset), batch \(batch), fp32, \(model.parameterCount) parameters: \(format(perBatch * 1e3, 2)) ms per batch, \(format(rate, 1)) images/s")
        }
    }
}
