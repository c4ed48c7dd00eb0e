import Foundation
import NN
import Tensors
import Testing
import TestSupport

/// A tiny model named as timm names a ViT.
final class TinyModel: Module {
    let clsToken: Tensor
    let blocks: [Block]
    let head: Linear

    override init() {
        clsToken = Tensor.zeros([1, 1, 8], requiresGrad: true)
        var options = Block.Options()
        options.mlpRatio = 2
        options.dropPath = 0.5
        blocks = [Block(dim: 8, heads: 2, options: options), Block(dim: 8, heads: 2, options: options)]
        head = Linear(8, 3)
    }
}

@Suite struct ModuleTests {
    @Test func parametersHaveCheckpointNames() {
        let names = TinyModel().namedParameters().map(\.name)
        #expect(names.first == "cls_token")
        #expect(names.contains("blocks.0.attn.qkv.weight"))
        #expect(names.contains("blocks.1.mlp.fc2.bias"))
        #expect(names.contains("blocks.0.norm1.weight"))
        #expect(names.contains("head.weight"))
        #expect(names.count == 1 + 2 * 12 + 2)
    }

    @Test func trainAndEvalReachEveryModule() {
        let model = TinyModel()
        model.eval()
        #expect(!model.blocks[1].dropPath.training)
        let x = random([2, 4, 8], seed: 1)
        // In evaluation, drop path is the identity: two runs agree.
        expectClose(model.blocks[0](x).output.toArray(), model.blocks[0](x).output.toArray(), tolerance: 0)
        model.train()
        #expect(model.blocks[1].attn.attnDrop.training)
    }

    @Test func loadingReportsEveryProblemAtOnce() {
        let model = TinyModel()
        var state = model.stateDict()
        state["head.weight"] = Tensor.zeros([4, 8])
        state.removeValue(forKey: "blocks.0.attn.proj.bias")
        state["extra.weight"] = Tensor.zeros([1])
        do {
            try model.load(stateDict: state)
            Issue.record("loading a mismatched state dict succeeded")
        } catch let error as StateDictError {
            #expect(error.missing == ["blocks.0.attn.proj.bias"])
            #expect(error.unexpected == ["extra.weight"])
            #expect(error.mismatched.count == 1 && error.description.contains("head.weight"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
        let source = TinyModel()
        try? model.load(stateDict: source.stateDict())
        #expect(model.head.weight.toArray() == source.head.weight.toArray())
    }

    @Test func weightDecayGroupsFollowTimm() {
        let groups = ParameterGroup.standard(TinyModel(), weightDecay: 0.05)
        #expect(groups[0].parameters.allSatisfy { $0.rank >= 2 })
        #expect(groups[0].parameters.count == 2 * 4 + 1)  // qkv, proj, fc1, fc2 per block + head
        #expect(groups[1].weightDecay == 0 && groups[1].parameters.count == 1 + 2 * 8 + 1)
    }

    @Test func initialisersHaveTheRightStatistics() {
        var rng = SeededGenerator(seed: 3)
        let t = Init.truncatedNormal([200, 100], std: 0.02, using: &rng).toArray()
        #expect(t.allSatisfy { abs($0) <= 0.04 })
        let mean = t.reduce(0, +) / Float(t.count)
        let std = (t.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(t.count)).squareRoot()
        #expect(abs(mean) < 1e-3 && abs(std - 0.0176) < 1e-3)  // a normal cut at ±2σ keeps 88% of its std
        let x = Init.xavierUniform([30, 50], using: &rng).toArray()
        let bound = (6.0 / 80.0).squareRoot()
        #expect(x.allSatisfy { abs(Double($0)) <= bound } && x.contains { abs(Double($0)) > 0.9 * bound })
    }
}

@Suite struct LayerGradientTests {
    @Test func attentionMatchesFiniteDifferences() {
        GlobalRandom.seed(11)
        let attention = Attention(dim: 8, numHeads: 2)
        let x = random([2, 3, 8], seed: 12)
        checkGradients([x] + attention.parameters(), tolerance: 2e-2) { _ in attention(x).output }
    }

    /// The fused op (`multiHeadAttention`) and the composition it replaces (taken when the probabilities must carry
    /// gradients) give the same output and the same gradients.
    @Test func fusedAttentionEqualsTheComposition() {
        GlobalRandom.seed(21)
        let attention = Attention(dim: 12, numHeads: 3)
        let x = random([2, 5, 12], seed: 22)
        x.requiresGrad = true
        func run(composition: Bool) -> (output: [Float], grads: [[Float]]) {
            for p in [x] + attention.parameters() { p.grad = nil }
            let output = attention(x, returnAttention: composition).output
            (output * output).sum().backward()
            return (output.toArray(), ([x] + attention.parameters()).map { $0.grad!.toArray() })
        }
        let fused = run(composition: false), composed = run(composition: true)
        expectClose(fused.output, composed.output, tolerance: 1e-5)
        for (a, b) in zip(fused.grads, composed.grads) { expectClose(a, b, tolerance: 1e-4) }
    }

    @Test func attentionProbabilitiesAreRowStochasticAndMatchTheDefinition() {
        GlobalRandom.seed(13)
        let attention = Attention(dim: 8, numHeads: 2)
        let x = random([1, 3, 8], seed: 14)
        let probabilities = Autograd.withNoGrad { attention(x, returnAttention: true).attention! }
        #expect(probabilities.shape == [1, 2, 3, 3])
        for row in probabilities.sum(axis: -1).toArray() { #expect(abs(row - 1) < 1e-5) }
        // Head 0 by hand: q, k from the qkv projection, softmax(q kᵀ / sqrt(4)).
        let qkv = Autograd.withNoGrad { attention.qkv(x) }.toArray()  // [1, 3, 24]
        let q = (0..<3).map { n in (0..<4).map { qkv[n * 24 + $0] } }
        let k = (0..<3).map { n in (0..<4).map { qkv[n * 24 + 8 + $0] } }
        let p = probabilities.toArray()
        for i in 0..<3 {
            let scores = (0..<3).map { j in zip(q[i], k[j]).map(*).reduce(0, +) / 2 }
            let e = scores.map { exp($0 - scores.max()!) }
            expectClose(Array(p[(i * 3)..<(i * 3 + 3)]), e.map { $0 / e.reduce(0, +) }, tolerance: 1e-5)
        }
    }

    @Test func mlpAndBlockMatchFiniteDifferences() {
        GlobalRandom.seed(15)
        let block = Block(dim: 8, heads: 2)
        let x = random([2, 3, 8], seed: 16)
        checkGradients([x] + block.parameters(), tolerance: 2e-2) { _ in block(x).output }
    }
}

@Suite struct ScheduleTests {
    @Test func warmupThenCosine() {
        let s = WarmupCosineSchedule(base: 1e-3, warmupSteps: 10, totalSteps: 110, warmupStart: 1e-6, minimum: 1e-5)
        #expect(s.learningRate(at: 0) == 1e-6)
        #expect(abs(s.learningRate(at: 5) - (1e-6 + (1e-3 - 1e-6) / 2)) < 1e-9)
        #expect(abs(s.learningRate(at: 10) - 1e-3) < 1e-9)
        #expect(abs(s.learningRate(at: 60) - (1e-5 + (1e-3 - 1e-5) / 2)) < 1e-8)
        #expect(abs(s.learningRate(at: 110) - 1e-5) < 1e-9)
    }

    @Test func stepDecay() {
        let s = StepSchedule(base: 0.1, stepSize: 30, gamma: 0.1)
        #expect(s.learningRate(at: 29) == 0.1)
        #expect(abs(s.learningRate(at: 30) - 0.01) < 1e-9)
        #expect(abs(s.learningRate(at: 65) - 0.001) < 1e-9)
    }

    @Test func gradientClippingScalesToTheMaximumNorm() {
        let a = Tensor([3, 0], shape: [2], requiresGrad: true), b = Tensor([0], shape: [1], requiresGrad: true)
        a.grad = Tensor([3, 0], shape: [2])
        b.grad = Tensor([4], shape: [1])
        let norm = clipGradientNorm([a, b], maxNorm: 1)
        #expect(abs(norm - 5) < 1e-6)
        expectClose(a.grad!.toArray() + b.grad!.toArray(), [0.6, 0, 0.8], tolerance: 1e-6)
        #expect(abs(clipGradientNorm([a, b], maxNorm: 10) - 1) < 1e-5)  // under the limit: unchanged
    }
}
