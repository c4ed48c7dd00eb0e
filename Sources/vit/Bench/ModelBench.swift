import ArgumentParser
import Foundation
import NN
import Tensors
import ViT

/// Inference speed of a whole ViT built from a preset with random weights.
struct ModelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Milliseconds per batch and images per second of a preset ViT (random weights): inference, or a training step with --train."
    )

    @Option(help: "Preset name, e.g. vit_base_patch16_224.") var preset = "vit_base_patch16_224"
    @Option(help: "Images per batch.") var batch = 1
    @Option(help: "Minimum seconds of timed runs.") var seconds: Double = 3
    @Flag(help: "Time a training step instead: forward, cross-entropy, backward and an AdamW update.") var train = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        GlobalRandom.seed(0)
        let config = try ViTConfig.preset(preset)
        let model = try VisionTransformer(config)
        model.eval()
        var rng = SeededGenerator(seed: 1)
        let images = Tensor.randn([batch, config.channels, config.imageSize, config.imageSize], using: &rng)
        let perBatch: Double
        if train {
            model.train()
            let optimizer = AdamW(ParameterGroup.standard(model, weightDecay: 0.05), learningRate: 1e-4)
            let labels = (0..<batch).map { $0 % max(config.numClasses, 1) }
            perBatch = medianSeconds(warmup: 2, minimumRuns: 5, minimumSeconds: seconds) {
                model(images).crossEntropy(targets: labels).backward()
                optimizer.step()
                optimizer.zeroGrad()
            }
        } else {
            perBatch = Autograd.withNoGrad {
                medianSeconds(warmup: 2, minimumRuns: 5, minimumSeconds: seconds) { _ = model(images) }
            }
        }
        let rate = Double(batch) / perBatch
        let mode = train ? "training" : "inference"
        if json {
            print("{\"preset\": \"\(preset)\", \"mode\": \"\(mode)\", \"batch\": \(batch), \"ms_per_batch\": \(format(perBatch * 1e3, 2)), \"images_per_second\": \(format(rate, 1))}")
        } else {
            print("\(preset), \(mode), batch \(batch), fp32, \(model.parameterCount) parameters: \(format(perBatch * 1e3, 2)) ms per batch, \(format(rate, 1)) images/s")
        }
    }
}
