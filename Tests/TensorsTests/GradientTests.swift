import Testing
@testable import Tensors
import TestSupport

/// Every differentiable op against finite differences.
@Suite struct GradientTests {
    @Test func broadcastingArithmetic() {
        let a = random([2, 3, 4], seed: 1), b = random([3, 1], seed: 2), c = random([4], seed: 3)
        checkGradients([a, b]) { $0[0] + $0[1] }
        checkGradients([a, b]) { $0[0] - $0[1] }
        checkGradients([b, a]) { $0[0] - $0[1] }  // first operand broadcast: expanded then subtracted
        checkGradients([a, c]) { $0[0] * $0[1] }
        let positive = random([3, 1], seed: 4, low: 0.5, high: 2)
        checkGradients([a, positive]) { $0[0] / $0[1] }
        let positiveFull = random([2, 3, 4], seed: 5, low: 0.5, high: 2)
        checkGradients([positive, positiveFull]) { $0[0] / $0[1] }  // numerator broadcast
    }

    @Test func scalarArithmetic() {
        let a = random([3, 4], seed: 5, low: 0.5, high: 2)
        checkGradients([a]) { -$0[0] }
        checkGradients([a]) { $0[0] * 3 + 1 }
        checkGradients([a]) { 2 - $0[0] / 4 }
        checkGradients([a]) { 1.5 / $0[0] }
    }

    @Test func unaryMath() {
        let x = random([2, 5], seed: 6, low: -2, high: 2)
        let positive = random([2, 5], seed: 7, low: 0.3, high: 3)
        checkGradients([x]) { $0[0].exp() }
        checkGradients([positive]) { $0[0].log() }
        checkGradients([positive]) { $0[0].sqrt() }
        checkGradients([positive]) { $0[0].rsqrt() }
        checkGradients([x]) { $0[0].tanh() }
        checkGradients([x]) { $0[0].sigmoid() }
        checkGradients([x]) { $0[0].square() }
        checkGradients([positive]) { $0[0].pow(1.7) }
        checkGradients([x]) { $0[0].gelu() }
        checkGradients([x]) { $0[0].gelu(approximate: true) }
        let awayFromZero = Tensor([-1.5, -0.4, 0.3, 0.9, 2.0, -2.2], shape: [6])
        checkGradients([awayFromZero]) { $0[0].relu() }
    }

    @Test func matmul() {
        checkGradients([random([3, 4], seed: 8), random([4, 5], seed: 9)]) { $0[0].matmul($0[1]) }
        checkGradients([random([2, 3, 4], seed: 10), random([4, 5], seed: 11)]) { $0[0].matmul($0[1]) }
        checkGradients([random([2, 1, 3, 4], seed: 12), random([1, 2, 4, 5], seed: 13)]) { $0[0].matmul($0[1]) }
        checkGradients([random([2, 4, 3], seed: 14), random([2, 5, 4], seed: 15)]) {
            $0[0].matmul($0[1], transposeSelf: true, transposeOther: true)
        }
        checkGradients([random([2, 3, 4], seed: 16), random([5, 4], seed: 17)]) {
            $0[0].matmul($0[1], transposeOther: true)
        }
    }

    @Test func linear() {
        let x = random([2, 3, 4], seed: 18), w = random([5, 4], seed: 19), b = random([5], seed: 20)
        checkGradients([x, w, b]) { $0[0].linear(weight: $0[1], bias: $0[2]) }
        checkGradients([x, w]) { $0[0].linear(weight: $0[1], bias: nil) }
        checkGradients([x, w, b]) { $0[0].linear(weight: $0[1], bias: $0[2], activation: .geluErf) }
    }

    @Test func softmaxAndLayerNorm() {
        let x = random([2, 3, 6], seed: 21, low: -3, high: 3)
        checkGradients([x]) { $0[0].softmax() }
        checkGradients([x]) { $0[0].logSoftmax() }
        let w = random([6], seed: 22, low: 0.5, high: 1.5), b = random([6], seed: 23)
        checkGradients([x, w, b]) { $0[0].layerNorm(weight: $0[1], bias: $0[2], eps: 1e-5) }
        checkGradients([x]) { $0[0].layerNorm(weight: nil, bias: nil, eps: 1e-5) }
    }

    @Test func reductions() {
        let x = random([2, 3, 4], seed: 24)
        checkGradients([x]) { $0[0].sum() }
        checkGradients([x]) { $0[0].sum(axis: 1) }
        checkGradients([x]) { $0[0].mean(axes: [0, 2], keepDim: true) }
        checkGradients([x]) { $0[0].max(axis: -1) }
    }

    @Test func layout() {
        let x = random([2, 3, 4], seed: 25)
        checkGradients([x]) { $0[0].reshape([4, -1]) }
        checkGradients([x]) { $0[0].permute([2, 0, 1]) }
        checkGradients([x]) { $0[0].transpose(0, 2) }
        checkGradients([x]) { $0[0].slice(axis: 0, start: 1, length: 1) }
        checkGradients([x]) { $0[0].slice(axis: 2, start: 1, length: 2) }
        checkGradients([x]) {
            let parts = $0[0].split([1, 2], axis: 1); return parts[1] * 2 + parts[0]
        }
        checkGradients([x, random([2, 2, 4], seed: 26)]) { Tensor.concat([$0[0], $0[1]], axis: 1) }
        checkGradients([x]) { $0[0].indexSelect(axis: 1, [2, 0, 2]) }
        checkGradients([x]) { $0[0].gather(axis: 1, [[2, 1], [0, 0]]) }
        checkGradients([x]) { $0[0].unsqueeze(1).squeeze(1) }
        checkGradients([random([3, 1], seed: 27)]) { $0[0].expand(to: [2, 3, 4]) }
    }

    @Test func selection() {
        let a = random([2, 3], seed: 28), b = random([2, 3], seed: 29)
        let mask = Tensor([1, 0, 1, 0, 0, 1], shape: [2, 3])
        checkGradients([a, b]) { Tensor.where(mask, $0[0], $0[1]) }
        checkGradients([a]) { $0[0].maskedFill(mask, value: -5) }
        var rng = SeededGenerator(seed: 3)
        let state = rng
        checkGradients([a]) { x in
            rng = state; return x[0].dropout(0.3, using: &rng)
        }
    }

    @Test func losses() {
        let logits = random([4, 5], seed: 30, low: -2, high: 2)
        checkGradients([logits]) { $0[0].crossEntropy(targets: [0, 3, 4, 1]) }
        checkGradients([logits]) { $0[0].crossEntropy(targets: [0, 3, 4, 1], labelSmoothing: 0.1) }
        let soft = random([4, 5], seed: 31, low: 0, high: 1)
        let normalized = Autograd.withNoGrad { soft / soft.sum(axis: 1, keepDim: true) }
        checkGradients([logits]) { $0[0].crossEntropy(softTargets: normalized) }
        checkGradients([logits, random([4, 5], seed: 32)]) { $0[0].mseLoss($0[1]) }
    }
}
