import ArgumentParser
import Foundation
import NN
import Tensors
import ViT

/// Inference speed of a whole ViT built from a preset with random weights.
struct ModelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract:
            "Milliseconds per batch and images per second of a preset ViT (random weights): inference, or a training step with --train."
    )

    @Option(help: "Architecture preset.") var arch = "vit_base_patch16_224"
    @Option(help: "Images per batch.") var batchSize = 1
    @Option(help: "Input side in pixels (default: the preset's); the position embedding is built at this size.") var imageSize: Int?
    // The spellings of earlier releases (../shared/bench/side_by_side.sh uses them), kept for one release.
    @Option(name: .customLong("preset"), help: .hidden) var presetAlias: String?
    @Option(name: .customLong("batch"), help: .hidden) var batchAlias: Int?
    @Option(help: "Minimum seconds of timed runs.") var seconds: Double = 3
    @Flag(help: "Time a training step instead: forward, cross-entropy, backward and an AdamW update.") var train = false
    @Flag(help: "Print one JSON object.") var json = false
    @Option(
        help:
            "Compute precision (inference default: bf16 where the CPU has AVX512-BF16 or AMX, else fp32; --train default: fp32, bf16 is mixed precision); int8 runs the linear layers as int8 products (dynamic quantisation, inference only)."
    )
    var precision: Precision?

    func run() throws {
        GlobalRandom.seed(0)
        let arch = presetAlias ?? self.arch, batchSize = batchAlias ?? self.batchSize
        var config = try ViTConfig.preset(arch)
        if let imageSize { config.imageSize = imageSize }
        let model = try VisionTransformer(config)
        model.eval()
        // Training keeps float32 weights; bf16 there is mixed precision (matrix products under Autocast), as
        // vit train --precision bf16. Its default is fp32, as vit train's.
        if train { try Precision.refuseInt8(self.precision, in: "a training step") }
        let precision = train ? Precision.decide(asked: self.precision, default: .fp32).precision : Precision.decideAndSay(precision)
        if !train {
            model.convertWeights(to: precision.dtype)
            model.freezeForInference()
            precision.quantize(model)
        }
        var rng = SeededGenerator(seed: 1)
        let images = Tensor.randn([batchSize, config.channels, config.imageSize, config.imageSize], using: &rng)
        let perBatch: Double
        if train {
            model.train()
            let optimizer = AdamW(ParameterGroup.standard(model, weightDecay: 0.05), learningRate: 1e-4)
            let labels = (0..<batchSize).map { $0 % max(config.numClasses, 1) }
            perBatch = medianSeconds(warmup: 2, minimumRuns: 5, minimumSeconds: seconds) {
                Autocast.run(precision.dtype) { model(images) }.crossEntropy(targets: labels).backward()
                optimizer.step()
                optimizer.zeroGrad()
            }
        } else {
            perBatch = Autograd.withNoGrad {
                medianSeconds(warmup: 2, minimumRuns: 5, minimumSeconds: seconds) { _ = model(images) }
            }
        }
        let rate = Double(batchSize) / perBatch
        let mode = train ? "training" : "inference"
        if json {
            print(
                "{\"arch\": \"\(arch)\", \"mode\": \"\(mode)\", \"precision\": \"\(precision.rawValue)\", \"batch_size\": \(batchSize), \"image_size\": \(config.imageSize), \"tokens\": \(config.tokenCount), \"ms_per_batch\": \(format(perBatch * 1e3, 2)), \"images_per_second\": \(format(rate, 1))}"
            )
        } else {
            print(
                "\(arch), \(mode), batch \(batchSize), \(precision.rawValue), \(model.parameterCount) parameters: \(format(perBatch * 1e3, 2)) ms per batch, \(format(rate, 1)) images/s"
            )
        }
    }
}
