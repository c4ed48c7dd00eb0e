import Foundation
import Testing
import TestSupport

@testable import Tensors

/// Every kernel of the oneDNN backend against the loop-based reference, in float32 and in bfloat16: the fast
/// kernels must give the plain loops' numbers (float32 to rounding, bfloat16 to its 8-bit mantissa).
@Suite struct BackendTests {
    let fast = CPUBackend.shared
    let reference = ReferenceBackend()

    func random(_ shape: [Int], seed: UInt64, dtype: DType = .float32, positive: Bool = false) -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = Tensor.randn(shape, using: &rng)
        if positive { for i in 0..<t.count { t.pointer[i] = abs(t.pointer[i]) + 0.1 } }
        return t.converted(to: dtype)
    }

    /// max |a - b| <= tolerance · max(1, max |b|), and the same shape and dtype.
    func expectClose(_ a: Tensor, _ b: Tensor, _ tolerance: Float, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(
            a.shape == b.shape && a.dtype == b.dtype, "\(what): \(a.shape) \(a.dtype) vs \(b.shape) \(b.dtype)",
            sourceLocation: sourceLocation)
        let x = a.toArray(), y = b.toArray()
        let scale = max(1, y.map(abs).max() ?? 0)
        let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= tolerance * scale, "\(what): max difference \(worst) > \(tolerance) x \(scale)", sourceLocation: sourceLocation)
    }

    func tolerance(_ dtype: DType) -> Float { dtype == .float32 ? 2e-5 : 2e-2 }

    @Test(arguments: DType.allCases)
    func matmulWithTransposesBiasAndActivation(dtype: DType) {
        let a = random([2, 5, 7], seed: 1, dtype: dtype), b = random([7, 3], seed: 2, dtype: dtype)
        let bias = random([3], seed: 3)
        for activation: UnaryOp? in [nil, .geluErf, .relu] {
            expectClose(
                fast.matmul(a, b, transposeA: false, transposeB: false, bias: bias, activation: activation),
                reference.matmul(a, b, transposeA: false, transposeB: false, bias: bias, activation: activation),
                tolerance(dtype), "\(dtype) matmul + bias + \(String(describing: activation))")
        }
        let c = random([2, 1, 7, 5], seed: 4, dtype: dtype), d = random([3, 4, 7], seed: 5, dtype: dtype)
        expectClose(
            fast.matmul(c, d, transposeA: true, transposeB: true, bias: nil, activation: nil),
            reference.matmul(c, d, transposeA: true, transposeB: true, bias: nil, activation: nil),
            tolerance(dtype), "\(dtype) batched, broadcast, both transposed")
        let e = random([7, 4], seed: 6, dtype: dtype), f = random([7, 6], seed: 7, dtype: dtype)
        expectClose(
            fast.matmul(e, f, transposeA: true, transposeB: false, bias: nil, activation: nil),
            reference.matmul(e, f, transposeA: true, transposeB: false, bias: nil, activation: nil),
            tolerance(dtype), "\(dtype) transposed left (weight gradients)")
    }

    /// oneDNN 2.6's jit binary kernels need the first source in the destination's type and know some broadcast
    /// patterns only; the others take its reference kernel, many times slower. The backend converts and merges axes
    /// so that a ViT's patterns (position embeddings on bf16 patches, drop-path's per-image mask, per-patch
    /// statistics) stay on jit kernels, with the reference loops' bits.
    @Test func binaryStaysOnJitKernelsWithTheSameBits() {
        let shapes: [([Int], [Int])] = [
            ([4, 5, 6], [1, 5, 6]), ([4, 5, 6], [4, 1, 1]), ([4, 5, 6], [4, 5, 1]), ([4, 5, 6], [1, 5, 1]),
            ([4, 5, 6], [6]), ([4, 5, 6], [4, 5, 6]), ([2, 1, 5, 6], [2, 1, 1, 1])
        ]
        for (shape, broadcast) in shapes {
            for (aType, bType) in [(DType.bfloat16, DType.float32), (.float32, .bfloat16), (.bfloat16, .bfloat16), (.float32, .float32)] {
                let a = random(shape, seed: 30, dtype: aType), b = random(broadcast, seed: 31, dtype: bType)
                for op in [BinaryOp.add, .mul, .div] {
                    expectClose(fast.binary(op, a, b), reference.binary(op, a, b), 0, "\(shape) \(aType) \(op) \(broadcast) \(bType)")
                }
            }
        }
        // A float32 first source into a bf16 destination rounds once, as the reference kernel does.
        let a = random([4, 5, 6], seed: 32), b = random([4, 1, 1], seed: 33, dtype: .bfloat16)
        let out = Tensor(uninitializedShape: a.shape, dtype: .bfloat16)
        fast.binary(.mul, a, b, into: out)
        expectClose(out, reference.binary(.mul, a, b).converted(to: .bfloat16), 0, "float32 x bf16 into bf16")
        guard OneDNN.computesBFloat16 else { return }  // without AVX-512 oneDNN has no bf16 binary kernels at all
        let patterns = shapes.map { CPUBackend.mergedBroadcastAxes($0.0, $0.1) }.map { " \($0.out) \($0.b) " }
        let slow = PrimitiveCache.implementations.filter { primitive in
            primitive.key.hasPrefix("binary") && primitive.implementation.hasPrefix("ref")
                && patterns.contains { primitive.key.contains($0) }
        }
        #expect(slow.isEmpty, "binary primitives on the reference kernel: \(slow)")
    }

    @Test(arguments: DType.allCases)
    func elementwiseSoftmaxNormAndReductions(dtype: DType) {
        let tol = tolerance(dtype)
        let x = random([3, 4, 6], seed: 8, dtype: dtype), y = random([4, 1], seed: 9, dtype: dtype)
        let positive = random([3, 4, 6], seed: 10, dtype: dtype, positive: true)
        for op in [BinaryOp.add, .sub, .mul, .max, .min] {
            expectClose(fast.binary(op, x, y), reference.binary(op, x, y), tol, "\(dtype) \(op)")
            expectClose(fast.binary(op, y, x), reference.binary(op, y, x), tol, "\(dtype) \(op), first operand broadcast")
        }
        expectClose(fast.binary(.div, x, positive), reference.binary(.div, x, positive), tol, "\(dtype) div")
        let ops: [UnaryOp] = [.exp, .tanh, .relu, .sigmoid, .abs, .square, .geluErf, .geluTanh, .affine(scale: 2, shift: -1)]
        for op in ops {
            expectClose(fast.unary(op, x), reference.unary(op, x), tol, "\(dtype) \(op)")
            let g = random(x.shape, seed: 11, dtype: dtype)
            expectClose(
                fast.unaryBackward(op, gradOutput: g, input: x), reference.unaryBackward(op, gradOutput: g, input: x),
                tol * 2, "\(dtype) \(op) backward")
        }
        for op in [UnaryOp.log, .sqrt, .power(scale: 1.5, exponent: 0.5)] {
            expectClose(fast.unary(op, positive), reference.unary(op, positive), tol, "\(dtype) \(op)")
        }
        for log in [false, true] {
            let out = fast.softmax(x, log: log)
            expectClose(out, reference.softmax(x, log: log), tol, "\(dtype) softmax log:\(log)")
            let g = random(x.shape, seed: 12, dtype: dtype)
            expectClose(
                fast.softmaxBackward(gradOutput: g, output: out, log: log),
                reference.softmaxBackward(gradOutput: g, output: out, log: log), tol * 2, "\(dtype) softmax backward log:\(log)")
        }
        let weight = random([6], seed: 13), bias = random([6], seed: 14)
        let (out, mean, variance) = fast.layerNorm(x, weight: weight, bias: bias, eps: 1e-6)
        let expected = reference.layerNorm(x, weight: weight, bias: bias, eps: 1e-6)
        expectClose(out, expected.output, tol * 2, "\(dtype) layer norm")
        expectClose(mean, expected.mean, tol, "\(dtype) layer norm mean")
        expectClose(variance, expected.variance, tol, "\(dtype) layer norm variance")
        if dtype == .float32 {
            let g = random(x.shape, seed: 15)
            let grads = fast.layerNormBackward(
                gradOutput: g, input: x, mean: mean, variance: variance, weight: weight, bias: bias, eps: 1e-6)
            let want = reference.layerNormBackward(
                gradOutput: g, input: x, mean: mean, variance: variance, weight: weight, bias: bias, eps: 1e-6)
            expectClose(grads.input, want.input, 1e-4, "layer norm backward input")
            expectClose(grads.weight!, want.weight!, 1e-4, "layer norm backward weight")
            expectClose(grads.bias!, want.bias!, 1e-4, "layer norm backward bias")
        }
        for op in [ReduceOp.sum, .mean, .max, .min] {
            for shape in [[1, 4, 6], [3, 4, 1], [3, 1, 6], [1, 1, 1]] {
                expectClose(fast.reduce(op, x, to: shape), reference.reduce(op, x, to: shape), tol * 4, "\(dtype) \(op) to \(shape)")
            }
        }
        // The adjoint: broadcasting back over one run of axes (an outer product) or two (zeros plus a binary op).
        for shape in [[1, 4, 6], [3, 4, 1], [3, 1, 6], [1, 1, 1], [1, 4, 1]] {
            let small = random(shape, seed: 17, dtype: dtype)
            for scale: Float in [1, 0.25] {
                expectClose(
                    fast.expand(small, to: x.shape, scale: scale), reference.expand(small, to: x.shape, scale: scale), tol,
                    "\(dtype) expand \(shape) x \(scale)")
            }
        }
        // A run of middle axes (the sum as one batched product) and two separate runs (oneDNN's reduction).
        let x4 = random([2, 3, 4, 5], seed: 16, dtype: dtype)
        for op in [ReduceOp.sum, .mean] {
            for shape in [[2, 1, 1, 5], [2, 1, 4, 1], [1, 3, 1, 5]] {
                expectClose(fast.reduce(op, x4, to: shape), reference.reduce(op, x4, to: shape), tol * 4, "\(dtype) \(op) to \(shape)")
            }
        }
        #expect(fast.argmax(x, axis: 2) == reference.argmax(x, axis: 2))
    }

    /// The fused attention kernels (strided oneDNN matmuls on q, k, v inside qkv) against the plain loops.
    @Test(arguments: DType.allCases)
    func attentionFromFusedProjection(dtype: DType) {
        let (b, n, heads, hd) = (2, 5, 3, 4)
        let qkv = random([b, n, 3 * heads * hd], seed: 30, dtype: dtype)
        let (out, probabilities) = fast.attention(qkv: qkv, heads: heads, scale: 0.5)
        let want = reference.attention(qkv: qkv, heads: heads, scale: 0.5)
        expectClose(out, want.output, tolerance(dtype), "\(dtype) attention output")
        expectClose(probabilities, want.probabilities, tolerance(dtype), "\(dtype) attention probabilities")
        let g = random([b, n, heads * hd], seed: 31, dtype: dtype)
        expectClose(
            fast.attentionBackward(gradOutput: g, qkv: qkv, probabilities: probabilities, heads: heads, scale: 0.5),
            reference.attentionBackward(gradOutput: g, qkv: qkv, probabilities: want.probabilities, heads: heads, scale: 0.5),
            tolerance(dtype) * 4, "\(dtype) attention backward")
    }

    @Test(arguments: DType.allCases)
    func layoutKernelsMoveValuesExactly(dtype: DType) {
        let x = random([2, 3, 4], seed: 16, dtype: dtype), z = random([2, 2, 4], seed: 17, dtype: dtype)
        expectClose(fast.permute(x, [2, 0, 1]), reference.permute(x, [2, 0, 1]), 0, "\(dtype) permute")
        expectClose(fast.concat([x, z], axis: 1), reference.concat([x, z], axis: 1), 0, "\(dtype) concat")
        expectClose(fast.slice(x, axis: 1, start: 1, length: 2), reference.slice(x, axis: 1, start: 1, length: 2), 0, "\(dtype) slice")
        expectClose(
            fast.unslice(z, shape: [2, 5, 4], axis: 1, start: 2), reference.unslice(z, shape: [2, 5, 4], axis: 1, start: 2), 0,
            "\(dtype) unslice")
        let indices = [[2, 0, 2], [1, 1, 0]]
        expectClose(fast.gather(x, axis: 1, indices: indices), reference.gather(x, axis: 1, indices: indices), 0, "\(dtype) gather")
        if dtype == .float32 {
            let g = random([2, 3, 4], seed: 18)
            expectClose(
                fast.scatterAdd(g, shape: [2, 3, 4], axis: 1, indices: indices),
                reference.scatterAdd(g, shape: [2, 3, 4], axis: 1, indices: indices), 1e-6, "scatterAdd")
        }
    }

    @Test func castsRoundToNearestEvenAndBack() {
        let values: [Float] = [1, -2.5, 3.14159, 1e-3, 65504, 1 + 1.0 / 256, 1 + 3.0 / 256, .infinity, -0.0]
        let x = Tensor(values, shape: [values.count])
        let fastBF16 = Tensor(uninitializedShape: x.shape, dtype: .bfloat16)
        let referenceBF16 = Tensor(uninitializedShape: x.shape, dtype: .bfloat16)
        fast.cast(x, into: fastBF16)
        reference.cast(x, into: referenceBF16)
        #expect(fastBF16.toArray() == referenceBF16.toArray())
        // 1 + 1/256 lies halfway between two bfloat16 values and goes to the even one (1); 1 + 3/256 goes up.
        #expect(fastBF16.toArray()[5] == 1 && fastBF16.toArray()[6] == 1 + 4.0 / 256)
        #expect(fastBF16.converted(to: .float32).toArray() == values.map(BFloat16.rounded))
        // The autograd op: the gradient comes back in the input's dtype.
        let leaf = Tensor(values.map { $0.isFinite ? $0 : 0 }, shape: [values.count], requiresGrad: true)
        leaf.cast(to: .bfloat16).cast(to: .float32).sum().backward()
        #expect(leaf.grad!.dtype == .float32 && leaf.grad!.toArray().allSatisfy { $0 == 1 })
    }

    @Test func trainingUpdatesMatchTheDoublePrecisionReference() {
        for decoupled in [true, false] {
            let (w1, g) = (random([1000], seed: 19), random([1000], seed: 20))
            let (m1, v1) = (random([1000], seed: 21), random([1000], seed: 22, positive: true))
            let (w2, m2, v2) = (w1.copy(), m1.copy(), v1.copy())
            let update = AdamUpdate(
                beta1: 0.9, beta2: 0.999, eps: 1e-8, stepSize: 1e-3 / 0.1, correction2Root: 0.0447,
                decay: decoupled ? 1 - 1e-3 * 0.05 : 1, l2: decoupled ? 0 : 0.05)
            fast.adamUpdate(w1, gradient: g, firstMoment: m1, secondMoment: v1, update)
            reference.adamUpdate(w2, gradient: g, firstMoment: m2, secondMoment: v2, update)
            expectClose(w1, w2, 1e-6, "Adam weights, decoupled: \(decoupled)")
            expectClose(m1, m2, 1e-6, "Adam first moments")
            expectClose(v1, v2, 1e-6, "Adam second moments")
        }
        for (momentum, nesterov, first) in [(Float(0), false, true), (0.9, false, true), (0.9, false, false), (0.9, true, false)] {
            let (w1, g, b1) = (random([500], seed: 23), random([500], seed: 24), random([500], seed: 25))
            let (w2, b2) = (w1.copy(), b1.copy())
            let update = SGDUpdate(learningRate: 0.1, weightDecay: 1e-4, momentum: momentum, nesterov: nesterov, firstStep: first)
            fast.sgdUpdate(w1, gradient: g, momentumBuffer: b1, update)
            reference.sgdUpdate(w2, gradient: g, momentumBuffer: b2, update)
            expectClose(w1, w2, 1e-6, "SGD weights, momentum \(momentum), nesterov \(nesterov), first \(first)")
            expectClose(b1, b2, 1e-6, "SGD buffer")
        }
        let (a1, x) = (random([300], seed: 26), random([300], seed: 27))
        let a2 = a1.copy()
        fast.lerp(a1, toward: x, decay: 0.97)
        reference.lerp(a2, toward: x, decay: 0.97)
        expectClose(a1, a2, 1e-6, "EMA")
        let big = random([10_000], seed: 28)
        #expect(abs(fast.sumOfSquares(big) - reference.sumOfSquares(big)) <= 1e-5 * reference.sumOfSquares(big))
        for dtype in DType.allCases {
            let filled = Tensor(uninitializedShape: [5], dtype: dtype)
            fast.fill(filled, 0.3)
            #expect(filled.toArray() == [Float](repeating: dtype == .float32 ? 0.3 : BFloat16.rounded(0.3), count: 5))
        }
    }

    @Test func frozenWeightsGiveTheSameProductsAndThawWhenChanged() {
        for dtype in DType.allCases {
            let x = random([3, 50, 64], seed: 29, dtype: dtype), weight = random([96, 64], seed: 30, dtype: dtype)
            let bias = random([96], seed: 31)
            let plain = fast.matmul(x, weight, transposeA: false, transposeB: true, bias: bias, activation: .geluErf)
            weight.freezeForInference()
            let packed = fast.matmul(x, weight, transposeA: false, transposeB: true, bias: bias, activation: .geluErf)
            let again = fast.matmul(x, weight, transposeA: false, transposeB: true, bias: bias, activation: .geluErf)
            expectClose(packed, plain, dtype == .float32 ? 1e-5 : 1e-2, "\(dtype) product with a frozen weight")
            #expect(again.toArray() == packed.toArray(), "the packed copy is reused")
            // Any change of the values drops the frozen mark and the packed copies.
            weight.assign(random([96, 64], seed: 32, dtype: dtype))
            #expect(!weight.isFrozenForInference && weight.packedCopies.isEmpty)
        }
        let w = random([10], seed: 33), g = random([10], seed: 34)
        w.freezeForInference()
        fast.sgdUpdate(
            w, gradient: g, momentumBuffer: nil, SGDUpdate(learningRate: 0.1, weightDecay: 0, momentum: 0, nesterov: false, firstStep: true)
        )
        #expect(!w.isFrozenForInference, "an optimiser step unfreezes")
    }

    @Test func aPackedWeightGivesItsPlainMemoryBackAndStillReadsTheSame() {
        for dtype in DType.allCases {
            let weight = random([96, 64], seed: 35, dtype: dtype), unfrozen = weight.copy()
            let values = weight.toArray()
            let x = random([50, 64], seed: 36, dtype: dtype), batch = random([16, 50, 64], seed: 37, dtype: dtype)
            func product(_ x: Tensor, _ w: Tensor) -> Tensor {
                fast.matmul(x, w, transposeA: false, transposeB: true, bias: nil, activation: nil)
            }
            weight.freezeForInference()
            let first = product(x, weight)
            // Where the primitive packs into a blocked layout (AVX-512) the plain memory goes; elsewhere (AVX2's
            // plain gemm) nothing is packed and nothing is given back.
            let packed = !weight.packedCopies.isEmpty
            #expect(weight.storage.isResident == !packed, "\(dtype): plain memory given back exactly when packed")
            // Another batch size's primitive packs from the pack (or shares it): the plain values stay away.
            let batched = product(batch, weight)
            #expect(weight.storage.isResident == !packed)
            #expect(product(x, weight).toArray() == first.toArray(), "the same pack serves the next call")
            #expect(weight.storage.isResident == !packed, "a call with the pack leaves the plain memory away")
            let tolerance: Float = dtype == .float32 ? 1e-5 : 1e-2
            expectClose(first, product(x, unfrozen), tolerance, "\(dtype) product from the pack")
            expectClose(batched, product(batch, unfrozen), tolerance, "\(dtype) batched product from the pack")
            #expect(weight.toArray() == values, "\(dtype): reading the values brings them back unchanged")
            #expect(weight.storage.isResident)
            #expect(product(x, weight).toArray() == first.toArray(), "the pack still serves after the values came back")
        }
    }
}
