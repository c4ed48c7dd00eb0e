import Foundation
import Testing
@testable import Tensors
import TestSupport

/// Convolution, pooling and the normalisations: oneDNN against the loop references, gradients against finite
/// differences, and the small cases worked by hand.
@Suite struct ConvolutionTests {
    let fast = CPUBackend(), reference = ReferenceBackend()

    func expectClose(
        _ a: Tensor?, _ b: Tensor?, _ tolerance: Float = 1e-4, _ what: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let a, let b else {
            #expect(a == nil && b == nil, "\(what): one side missing", sourceLocation: sourceLocation)
            return
        }
        #expect(a.shape == b.shape, "\(what): \(a.shape) vs \(b.shape)", sourceLocation: sourceLocation)
        let worst = zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= tolerance, "\(what): max difference \(worst)", sourceLocation: sourceLocation)
    }

    static let geometries: [(String, kernel: Int, stride: Int, before: [Int], after: [Int], dilation: Int, groups: Int)] = [
        ("3x3 pad 1", 3, 1, [1, 1], [1, 1], 1, 1), ("7x7 stride 2 pad 3", 7, 2, [3, 3], [3, 3], 1, 1),
        ("1x1 stride 2", 1, 2, [0, 0], [0, 0], 1, 1), ("same-style asymmetric", 3, 2, [0, 0], [1, 1], 1, 1),
        ("dilated", 3, 1, [2, 2], [2, 2], 2, 1), ("grouped", 3, 1, [1, 1], [1, 1], 1, 2)
    ]

    @Test func convolutionKernelsAgreeWithTheReference() {
        for (name, k, s, before, after, d, groups) in Self.geometries {
            let g = WindowGeometry(
                kernel: [k, k], stride: [s, s], paddingBefore: before, paddingAfter: after, dilation: [d, d], groups: groups)
            let x = random([2, 4, 9, 8], seed: 1), w = random([6, 4 / groups, k, k], seed: 2), b = random([6], seed: 3)
            let out = fast.convolution(x, weight: w, bias: b, g)
            expectClose(out, reference.convolution(x, weight: w, bias: b, g), 1e-4, "\(name) forward")
            let grad = random(out.shape, seed: 4)
            let f = fast.convolutionBackward(gradOutput: grad, input: x, weight: w, g, inputGradient: true, biasGradient: true)
            let r = reference.convolutionBackward(gradOutput: grad, input: x, weight: w, g, inputGradient: true, biasGradient: true)
            expectClose(f.input, r.input, 1e-4, "\(name) input gradient")
            expectClose(f.weight, r.weight, 1e-3, "\(name) weight gradient")
            expectClose(f.bias, r.bias, 1e-4, "\(name) bias gradient")
        }
    }

    @Test func poolingKernelsAgreeWithTheReference() {
        let x = random([2, 3, 9, 9], seed: 5)
        for kind in [PoolingKind.max, .average, .averageExcludingPadding] {
            for (k, s, p) in [(3, 2, 1), (2, 2, 0), (3, 1, 1)] {
                let g = WindowGeometry(kernel: [k, k], stride: [s, s], paddingBefore: [p, p], paddingAfter: [p, p])
                let f = fast.pooling(x, kind, g), r = reference.pooling(x, kind, g)
                expectClose(f.output, r.output, 1e-6, "\(kind) k\(k) s\(s) p\(p)")
                let grad = random(f.output.shape, seed: 6)
                expectClose(
                    fast.poolingBackward(gradOutput: grad, input: x, workspace: f.workspace, kind, g),
                    reference.poolingBackward(gradOutput: grad, input: x, workspace: r.workspace, kind, g), 1e-6,
                    "\(kind) k\(k) s\(s) p\(p) backward")
            }
        }
    }

    @Test func batchNormKernelsAgreeWithTheReference() {
        let x = random([3, 4, 5, 5], seed: 7, low: -2, high: 3), w = random([4], seed: 8), b = random([4], seed: 9)
        for fixed in [false, true] {
            let statistics = fixed ? (random([4], seed: 10), random([4], seed: 11, low: 0.5, high: 2)) : nil
            let f = fast.batchNorm(x, weight: w, bias: b, statistics: statistics, eps: 1e-5)
            let r = reference.batchNorm(x, weight: w, bias: b, statistics: statistics, eps: 1e-5)
            expectClose(f.output, r.output, 1e-4, "batch norm (fixed: \(fixed))")
            expectClose(f.variance, r.variance, 1e-4, "batch variance")
            let grad = random(x.shape, seed: 12)
            let fb = fast.batchNormBackward(
                gradOutput: grad, input: x, mean: f.mean, variance: f.variance, weight: w, bias: b, eps: 1e-5, fixedStatistics: fixed)
            let rb = reference.batchNormBackward(
                gradOutput: grad, input: x, mean: r.mean, variance: r.variance, weight: w, bias: b, eps: 1e-5, fixedStatistics: fixed)
            expectClose(fb.input, rb.input, 1e-4, "batch norm input gradient (fixed: \(fixed))")
            expectClose(fb.weight, rb.weight, 1e-4, "batch norm weight gradient")
            expectClose(fb.bias, rb.bias, 1e-4, "batch norm bias gradient")
        }
    }

    @Test func gradientsMatchFiniteDifferences() {
        let x = random([2, 4, 6, 6], seed: 13), w = random([4, 2, 3, 3], seed: 14), b = random([4], seed: 15)
        checkGradients([x, w, b]) { $0[0].conv2d(weight: $0[1], bias: $0[2], stride: 2, padding: .same, groups: 2) }
        checkGradients([x, w]) { $0[0].conv2d(weight: $0[1], padding: .symmetric(2), dilation: 2, groups: 2) }
        // Max pooling on distinct values (a tie would make the finite difference meaningless).
        let distinct = Tensor((0..<72).map { Float(($0 * 37) % 72) / 10 }, shape: [1, 2, 6, 6])
        checkGradients([distinct]) { $0[0].maxPool2d(kernel: 3, stride: 2, padding: .symmetric(1)) }
        checkGradients([x]) { $0[0].avgPool2d(kernel: 2) }
        checkGradients([x]) { $0[0].avgPool2d(kernel: 3, stride: 1, padding: .symmetric(1), countIncludePad: false) }
        let gamma = random([4], seed: 16), beta = random([4], seed: 17)
        checkGradients([x, gamma, beta]) {
            $0[0].batchNorm(weight: $0[1], bias: $0[2], runningMean: Tensor.zeros([4]), runningVariance: Tensor.ones([4]), training: true)
        }
        checkGradients([x, gamma, beta]) {
            $0[0].batchNorm(
                weight: $0[1], bias: $0[2], runningMean: Tensor.full([4], 0.2), runningVariance: Tensor.full([4], 1.5), training: false)
        }
        checkGradients([x, gamma, beta]) { $0[0].groupNorm(groups: 2, weight: $0[1], bias: $0[2]) }
        let weight = random([3, 2, 3, 3], seed: 18)
        checkGradients([weight]) { $0[0].standardized(eps: 1e-8) }
        checkGradients([weight]) { $0[0].standardized(eps: 1e-5, epsOnStandardDeviation: true) }
    }

    /// A frozen kernel is packed once, where the primitive wants a blocked layout, in place of its plain memory;
    /// outputs and the kernel's values read the same.
    @Test func aFrozenKernelIsPackedOnceAndReadsTheSame() {
        let x = random([2, 16, 9, 8], seed: 40), w = random([32, 16, 3, 3], seed: 41), b = random([32], seed: 42)
        let g = WindowGeometry(kernel: [3, 3], stride: [1, 1], paddingBefore: [1, 1], paddingAfter: [1, 1])
        let values = w.toArray(), plain = fast.convolution(x, weight: w, bias: b, g)
        w.freezeForInference()
        let frozen = fast.convolution(x, weight: w, bias: b, g)
        expectClose(frozen, plain, 1e-5, "frozen kernel")
        #expect(w.storage.isResident == w.packedCopies.isEmpty, "plain memory given back exactly when packed")
        #expect(fast.convolution(x, weight: w, bias: b, g).toArray() == frozen.toArray(), "the pack serves again")
        #expect(w.toArray() == values, "reading the kernel brings its values back")
    }

    /// Channel-blocked images [B, C / b, H, W, b] (oneDNN's nChw8c / nChw16c) through every image kernel give the
    /// channels-first results, blocked; the reference computes them by way of channels-first.
    @Test func channelBlockedKernelsAgreeWithChannelsFirst() {
        let x = random([2, 16, 9, 8], seed: 21, low: -2, high: 3), w = random([32, 16, 3, 3], seed: 22), b = random([32], seed: 23)
        #expect(x.channelBlocked(8).channelsFirst().toArray() == x.toArray())
        // Blocked [0, 0, 0, w, lane] is channel `lane` at row 0, column w: flat index lane · 72 + w channels-first.
        let values = x.toArray(), blockedValues = x.channelBlocked(8).toArray()
        let expected: [Float] = (0..<16).map { (i: Int) -> Float in values[(i % 8) * 72 + i / 8] }
        #expect(Array(blockedValues[..<16]) == expected)
        for block in [8, 16] {
            let blocked = x.channelBlocked(block)
            let g = WindowGeometry(kernel: [3, 3], stride: [2, 2], paddingBefore: [1, 1], paddingAfter: [1, 1])
            for backend in [fast, reference] as [Backend] {
                let name = "\(type(of: backend)) nChw\(block)c"
                let plainOut = fast.convolution(x, weight: w, bias: b, g)
                let out = backend.convolution(blocked, weight: w, bias: b, g)
                #expect(out.shape == [2, 32 / block, 5, 4, block])
                expectClose(out.channelsFirst(), plainOut, 1e-4, "\(name) convolution")
                let grad = random(plainOut.shape, seed: 24)
                let plain = fast.convolutionBackward(gradOutput: grad, input: x, weight: w, g, inputGradient: true, biasGradient: true)
                let grads = backend.convolutionBackward(
                    gradOutput: grad.channelBlocked(block), input: blocked, weight: w, g, inputGradient: true, biasGradient: true)
                expectClose(grads.input?.channelsFirst(), plain.input, 1e-4, "\(name) input gradient")
                expectClose(grads.weight, plain.weight, 1e-3, "\(name) weight gradient")
                expectClose(grads.bias, plain.bias, 1e-4, "\(name) bias gradient")

                let pool = WindowGeometry(kernel: [3, 3], stride: [2, 2], paddingBefore: [1, 1], paddingAfter: [1, 1])
                let pooled = backend.pooling(blocked, .max, pool), plainPooled = fast.pooling(x, .max, pool)
                expectClose(pooled.output.channelsFirst(), plainPooled.output, 0, "\(name) max pooling")
                let poolGrad = random(plainPooled.output.shape, seed: 25)
                expectClose(
                    backend.poolingBackward(
                        gradOutput: poolGrad.channelBlocked(block), input: blocked, workspace: pooled.workspace, .max, pool
                    ).channelsFirst(),
                    fast.poolingBackward(gradOutput: poolGrad, input: x, workspace: plainPooled.workspace, .max, pool), 1e-6,
                    "\(name) max pooling backward")

                let gamma = random([16], seed: 26), beta = random([16], seed: 27)
                let normed = backend.batchNorm(blocked, weight: gamma, bias: beta, statistics: nil, eps: 1e-5)
                let plainNormed = fast.batchNorm(x, weight: gamma, bias: beta, statistics: nil, eps: 1e-5)
                expectClose(normed.output.channelsFirst(), plainNormed.output, 1e-4, "\(name) batch norm")
                expectClose(normed.variance, plainNormed.variance, 1e-4, "\(name) batch variance")
                let normGrad = random(x.shape, seed: 28)
                let nb = backend.batchNormBackward(
                    gradOutput: normGrad.channelBlocked(block), input: blocked, mean: normed.mean, variance: normed.variance, weight: gamma,
                    bias: beta, eps: 1e-5, fixedStatistics: false)
                let pb = fast.batchNormBackward(
                    gradOutput: normGrad, input: x, mean: plainNormed.mean, variance: plainNormed.variance, weight: gamma, bias: beta,
                    eps: 1e-5, fixedStatistics: false)
                expectClose(nb.input.channelsFirst(), pb.input, 1e-4, "\(name) batch norm input gradient")
                expectClose(nb.weight, pb.weight, 1e-4, "\(name) batch norm weight gradient")
            }
        }
        // Through autograd: blocking, a blocked convolution, batch norm and unblocking, against finite differences.
        let small = random([2, 8, 5, 5], seed: 29), kernel = random([8, 8, 3, 3], seed: 30)
        checkGradients([small, kernel]) {
            $0[0].channelBlocked(8).conv2d(weight: $0[1], padding: .symmetric(1))
                .batchNorm(weight: nil, bias: nil, runningMean: Tensor.zeros([8]), runningVariance: Tensor.ones([8]), training: true)
                .channelsFirst()
        }
    }

    /// The backend names the block its convolutions prefer: 8 or 16 on x86 oneDNN, 1 for the reference loops.
    @Test func preferredChannelBlockIsOneDNNs() {
        #expect([8, 16].contains(fast.preferredChannelBlock))
        #expect(reference.preferredChannelBlock == 1)
    }

    /// The running statistics move by the momentum toward the batch's mean and unbiased variance, as PyTorch's.
    @Test func runningStatisticsUpdateWithUnbiasedVariance() {
        let x = Tensor([1, 2, 3, 4, 10, 20, 30, 40], shape: [2, 2, 2, 1])  // channel 0: 1, 2, 10, 20; channel 1: 3, 4, 30, 40
        let mean = Tensor.zeros([2]), variance = Tensor.ones([2])
        _ = x.batchNorm(weight: nil, bias: nil, runningMean: mean, runningVariance: variance, training: true, momentum: 0.1)
        let m0 = (1 + 2 + 10 + 20) / 4.0, v0 = [1.0, 2, 10, 20].map { ($0 - m0) * ($0 - m0) }.reduce(0, +) / 3
        #expect(abs(Double(mean.toArray()[0]) - 0.1 * m0) < 1e-5)
        #expect(abs(Double(variance.toArray()[0]) - (0.9 + 0.1 * v0)) < 1e-4)
    }

    /// TensorFlow's SAME padding: ceil(size / stride) outputs, the smaller half of the padding first.
    @Test func samePaddingSplitsAsTensorFlow() {
        let (before, after) = SpatialPadding.same.resolved(input: [224, 225], kernel: [7, 7], stride: [2, 2], dilation: [1, 1])
        #expect(before == [2, 3] && after == [3, 3])
        let x = random([1, 1, 7, 7], seed: 19)
        #expect(x.conv2d(weight: random([1, 1, 3, 3], seed: 20), stride: 2, padding: .same).shape == [1, 1, 4, 4])
    }
}
