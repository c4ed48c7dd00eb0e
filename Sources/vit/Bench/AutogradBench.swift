import ArgumentParser
import Foundation
import NN
import Tensors

/// Forward and backward through a stack of ViT-B-sized transformer blocks, timing the step and the part of it spent
/// inside oneDNN primitives (the rest is the engine: Swift loops, allocation, the tape).
struct AutogradBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autograd",
        abstract: "Forward + backward of a 12-block ViT-B-sized stack (width 768, 12 heads, MLP 3072, 197 tokens)."
    )

    @Option(help: "Images per batch.") var batchSize = 1
    @Option(help: "Number of blocks.") var depth = 12
    @Option(help: "Token width.") var width = 768
    @Option(help: "Attention heads.") var heads = 12
    @Option(help: "Tokens per image (196 patches + class token for ViT-B/16 at 224).") var tokens = 197
    @Option(help: "Timed steps (after 2 warm-up steps).") var steps = 5
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        GlobalRandom.seed(0)
        let blocks = (0..<depth).map { _ in Block(dim: width, heads: heads) }
        var rng = SeededGenerator(seed: 1)
        let input = Tensor.randn([batchSize, tokens, width], using: &rng)
        let parameterCount = blocks.reduce(0) { $0 + $1.parameterCount }

        func step() {
            var x = input
            for block in blocks { x = block(x).output }
            x.mean().backward()
            for block in blocks { for p in block.parameters() { p.grad = nil } }
        }
        func forward() {
            Autograd.withNoGrad {
                var x = input; for block in blocks { x = block(x).output }
            }
        }

        for _ in 0..<2 { step() }
        var stepTimes: [Double] = [], oneDNNShares: [Double] = []
        for _ in 0..<steps {
            OneDNN.resetTimer()
            let t0 = DispatchTime.now().uptimeNanoseconds
            step()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            stepTimes.append(seconds)
            oneDNNShares.append(OneDNN.secondsInPrimitives / seconds)
        }
        let order = stepTimes.indices.sorted { stepTimes[$0] < stepTimes[$1] }
        let median = order[order.count / 2]
        let forwardSeconds = medianSeconds(minimumRuns: steps, minimumSeconds: 0) { forward() }
        let ms = stepTimes[median] * 1e3, share = oneDNNShares[median] * 100
        if json {
            print(
                "{\"batch_size\": \(batchSize), \"depth\": \(depth), \"width\": \(width), \"parameters\": \(parameterCount), \"step_ms\": \(format(ms, 2)), \"onednn_share\": \(format(share / 100, 3)), \"inference_forward_ms\": \(format(forwardSeconds * 1e3, 2))}"
            )
        } else {
            print("\(depth) blocks, width \(width), \(heads) heads, \(tokens) tokens, batch \(batchSize): \(parameterCount) parameters")
            print(
                "forward + backward: \(format(ms, 1)) ms per step (median of \(steps)), \(format(share, 1))% of it inside oneDNN primitives"
            )
            print("inference forward (no tape, fused GELU): \(format(forwardSeconds * 1e3, 1)) ms")
        }
    }
}
