import Foundation
import Testing
import TestSupport

@testable import Tensors

/// `--precision int8`: the oneDNN int8 product against the reference backend's loops (the same rounding, so the
/// same integers: they agree to float rounding), and against the float32 product (to the quantisation error).
@Suite struct QuantizationTests {
    let fast = CPUBackend.shared
    let reference = ReferenceBackend()

    func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = Tensor.randn(shape, using: &rng)
        for i in 0..<t.count { t.pointer[i] *= scale }
        return t
    }

    func quantizedWeight(_ shape: [Int], seed: UInt64) -> Tensor {
        let weight = random(shape, seed: seed, scale: 0.05)
        weight.freezeForInference()
        #expect(weight.quantizeForInference())
        return weight
    }

    func largestDifference(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max() ?? 0
    }

    @Test func weightsAreRoundedPerOutputChannel() throws {
        let weight = random([6, 40], seed: 1)
        for i in 0..<40 { weight.pointer[2 * 40 + i] = 0 }  // a row of zeros
        let w = weight.toArray()
        weight.freezeForInference()
        #expect(weight.quantizeForInference())
        let quantized = try #require(weight.quantized)
        // The float32 memory went back to the system; read again, the values are the int8 ones dequantised.
        #expect(!weight.storage.isResident)
        let dequantized = weight.toArray()
        #expect(weight.storage.isResident)
        for n in 0..<6 {
            for k in 0..<40 { #expect(dequantized[n * 40 + k] == Float(quantized.values[n * 40 + k]) * quantized.scales[n]) }
        }
        for n in 0..<6 {
            let row = Array(w[n * 40..<(n + 1) * 40]), values = quantized.values[n * 40..<(n + 1) * 40]
            let largest = row.map(abs).max()!
            #expect(quantized.scales[n] == largest / 127)
            if largest > 0 { #expect(values.map { abs(Int($0)) }.max() == 127) }
            for (x, q) in zip(row, values) {
                #expect(abs(Float(q) * quantized.scales[n] - x) <= quantized.scales[n] / 2 * 1.0001)
            }
        }
        #expect(quantized.values[80..<120].allSatisfy { $0 == 0 })
        // A weight with a value that is not finite stays float32.
        let broken = random([3, 8], seed: 2)
        broken.pointer[5] = .nan
        broken.freezeForInference()
        #expect(!broken.quantizeForInference())
        #expect(broken.quantized == nil)
        // Changing the values drops the int8 copy with the packs.
        weight.thaw()
        #expect(weight.quantized == nil)
    }

    /// Shapes from one row to a ViT-S block's, with and without bias and a fused activation: the oneDNN kernel
    /// and the loops agree to float rounding, and both stay within the quantisation error of the float32 product.
    @Test(arguments: [(1, 16, 8), (3 * 17, 64, 48), (197, 384, 96)])
    func int8ProductMatchesTheReferenceAndFloat(m: Int, k: Int, n: Int) {
        let x = random([m, k], seed: 3), weight = quantizedWeight([n, k], seed: 4), bias = random([n], seed: 5, scale: 0.1)
        for (bias, activation): (Tensor?, UnaryOp?) in [(nil, nil), (bias, nil), (bias, .geluErf), (nil, .relu)] {
            let int8 = fast.matmul(x, weight, transposeA: false, transposeB: true, bias: bias, activation: activation)
            let loops = reference.matmul(x, weight, transposeA: false, transposeB: true, bias: bias, activation: activation)
            #expect(int8.shape == [m, n] && int8.dtype == .float32)
            let scale = max(1, loops.toArray().map(abs).max() ?? 0)
            #expect(
                largestDifference(int8, loops) <= 1e-5 * scale, "int8 kernel vs loops, \(m)x\(k)x\(n) \(String(describing: activation))")
            // The float32 product of the same operands (a plain copy of the weight carries no int8 copy).
            let plain = Tensor(weight.toArray(), shape: weight.shape)
            let float = fast.matmul(x, plain, transposeA: false, transposeB: true, bias: bias, activation: activation)
            let error = largestDifference(int8, float), size = float.toArray().map(abs).max() ?? 1
            #expect(error <= 0.03 * size, "int8 vs float32 \(m)x\(k)x\(n): \(error) of \(size)")
            #expect(error > 0, "the int8 path was not taken")
        }
    }

    /// A batched input folds into rows, as the float32 product does; through `linear` as the layers call it.
    @Test func batchedLinearTakesTheInt8Path() {
        let x = random([2, 5, 32], seed: 6), weight = quantizedWeight([24, 32], seed: 7), bias = random([24], seed: 8)
        let int8 = x.linear(weight: weight, bias: bias, activation: .geluTanh)
        #expect(int8.shape == [2, 5, 24])
        let loops = reference.matmul(x, weight, transposeA: false, transposeB: true, bias: bias, activation: .geluTanh)
        #expect(largestDifference(int8, loops) <= 1e-5)
    }

    /// Activations that are not finite take the float32 path, so the NaN or infinity goes on as in fp32.
    @Test func nonFiniteActivationsTakeTheFloatPath() {
        let weight = quantizedWeight([4, 16], seed: 9)
        let plain = Tensor(weight.toArray(), shape: weight.shape)
        for bad: Float in [.nan, .infinity] {
            let x = random([3, 16], seed: 10)
            x.pointer[7] = bad
            for backend: any Backend in [fast, reference] {
                let out = backend.matmul(x, weight, transposeA: false, transposeB: true, bias: nil, activation: nil)
                let float = backend.matmul(x, plain, transposeA: false, transposeB: true, bias: nil, activation: nil)
                #expect(zip(out.toArray(), float.toArray()).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) })
            }
        }
        // All zeros: the product is the bias.
        let zeros = Tensor([Float](repeating: 0, count: 32), shape: [2, 16]), bias = random([4], seed: 11)
        let out = fast.matmul(zeros, weight, transposeA: false, transposeB: true, bias: bias, activation: nil)
        #expect(out.toArray() == bias.toArray() + bias.toArray())
    }

    /// Each sample (entry of the first axis) has its own activation scale: a quiet image batched with a loud one
    /// comes out exactly as alone, in both backends.
    @Test func eachSampleIsQuantisedOnItsOwn() {
        let weight = quantizedWeight([8, 32], seed: 14), bias = random([8], seed: 17)
        let quiet = random([1, 5, 32], seed: 15, scale: 1e-3), loud = random([1, 5, 32], seed: 16, scale: 10)
        for backend: any Backend in [fast, reference] {
            let together = backend.matmul(
                backend.concat([quiet, loud], axis: 0), weight, transposeA: false, transposeB: true, bias: bias, activation: nil)
            let alone = backend.matmul(quiet, weight, transposeA: false, transposeB: true, bias: bias, activation: nil)
            #expect(together.shape == [2, 5, 8])
            #expect(Array(together.toArray()[0..<40]) == alone.toArray())
        }
    }

    /// bfloat16 activations in and out (what int8 gives where the CPU multiplies bf16): the same integers as from
    /// the same values in float32, each output rounded once to bfloat16, in both backends.
    @Test func bfloat16ActivationsInAndOut() {
        let weight = random([40, 48], seed: 19, scale: 0.05), bias = random([40], seed: 20)
        weight.freezeForInference()
        #expect(weight.quantizeForInference(outputDType: .bfloat16))
        let x = random([2, 7, 48], seed: 18).converted(to: .bfloat16), widened = x.converted(to: .float32)
        for activation: UnaryOp? in [nil, .geluErf] {
            let int8 = fast.matmul(x, weight, transposeA: false, transposeB: true, bias: bias, activation: activation)
            let loops = reference.matmul(x, weight, transposeA: false, transposeB: true, bias: bias, activation: activation)
            #expect(int8.dtype == .bfloat16 && loops.dtype == .bfloat16 && int8.shape == [2, 7, 40])
            for (a, b) in zip(int8.toArray(), loops.toArray()) { #expect(abs(a - b) <= abs(b) / 128 + 1e-6, "\(a) vs \(b)") }
            let fromFloat = fast.matmul(widened, weight, transposeA: false, transposeB: true, bias: bias, activation: activation)
            #expect(fromFloat.toArray() == int8.toArray())
        }
        // Not finite: the float32 product, in bfloat16.
        let plain = Tensor(weight.toArray(), shape: weight.shape)
        widened.pointer[3] = .nan
        let broken = widened.converted(to: .bfloat16)
        let out = fast.matmul(broken, weight, transposeA: false, transposeB: true, bias: nil, activation: nil)
        let float = fast.matmul(widened, plain, transposeA: false, transposeB: true, bias: nil, activation: nil).converted(to: .bfloat16)
        #expect(out.dtype == .bfloat16 && zip(out.toArray(), float.toArray()).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) })
    }

    /// The activation scale is measured per call: the same kernel on inputs a thousand times apart.
    @Test func theActivationScaleFollowsEachInput() {
        let weight = quantizedWeight([8, 32], seed: 12)
        let small = random([4, 32], seed: 13, scale: 1e-3), large = random([4, 32], seed: 13, scale: 1)
        let a = fast.matmul(small, weight, transposeA: false, transposeB: true, bias: nil, activation: nil)
        let b = fast.matmul(large, weight, transposeA: false, transposeB: true, bias: nil, activation: nil)
        #expect(largestDifference(a * 1000, b) <= 1e-5 * (b.toArray().map(abs).max() ?? 1))
    }
}
