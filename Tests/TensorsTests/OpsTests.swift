import Foundation
import Testing
@testable import Tensors
import TestSupport

/// Forward values of the ops against direct computations.
@Suite struct OpsTests {
    func naiveMatmul(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> [Float] {
        var out = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for p in 0..<k { out[i * n + j] += a[i * k + p] * b[p * n + j] } } }
        return out
    }

    @Test func matmulMatchesNaiveProduct() {
        let a = random([3, 7], seed: 1), b = random([7, 5], seed: 2)
        expectClose(a.matmul(b).toArray(), naiveMatmul(a.toArray(), b.toArray(), m: 3, k: 7, n: 5))
        // Batched with a broadcast batch axis, and transposed operands read in place.
        let batched = random([2, 3, 7], seed: 3)
        let out = batched.matmul(b)
        #expect(out.shape == [2, 3, 5])
        expectClose(Array(out.toArray()[15...]), naiveMatmul(Array(batched.toArray()[21...]), b.toArray(), m: 3, k: 7, n: 5))
        let bT = b.transpose(0, 1)  // [5, 7]
        expectClose(a.matmul(bT, transposeOther: true).toArray(), a.matmul(b).toArray())
        let aT = a.transpose(0, 1)  // [7, 3]
        expectClose(aT.matmul(b, transposeSelf: true).toArray(), a.matmul(b).toArray())
    }

    @Test func linearFusesBiasAndActivation() {
        let x = random([4, 6], seed: 4), w = random([3, 6], seed: 5), b = random([3], seed: 6)
        let unfused = (x.matmul(w, transposeOther: true) + b).gelu()
        let fused = Autograd.withNoGrad { x.linear(weight: w, bias: b, activation: .geluErf) }
        expectClose(fused.toArray(), unfused.toArray())
    }

    @Test func broadcastingArithmetic() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), b = Tensor([10, 20, 30], shape: [3])
        #expect((a + b).toArray() == [11, 22, 33, 14, 25, 36])
        #expect((b - a).toArray() == [9, 18, 27, 6, 15, 24])
        let column = Tensor([2, 4], shape: [2, 1])
        #expect((a / column).toArray() == [0.5, 1, 1.5, 1, 1.25, 1.5])
        #expect((column * b).shape == [2, 3])
        #expect((a * 2 + 1).toArray() == [3, 5, 7, 9, 11, 13])
        #expect((12 / a).toArray() == [12, 6, 4, 3, 2.4, 2])
    }

    @Test func elementwiseFunctions() {
        let x = Tensor([-1, 0, 1, 2], shape: [4])
        expectClose(x.gelu().toArray(), [-0.15865526, 0, 0.8413447, 1.9544997])
        expectClose(x.gelu(approximate: true).toArray(), [-0.15880801, 0, 0.841192, 1.9545977])
        expectClose(x.exp().toArray(), [Float(M_E) / Float(M_E * M_E), 1, Float(M_E), Float(M_E * M_E)], tolerance: 1e-5)
        expectClose(Tensor([4, 0.25], shape: [2]).rsqrt().toArray(), [0.5, 2])
        expectClose(x.tanh().toArray(), [-0.7615942, 0, 0.7615942, 0.9640276])
    }

    @Test func softmaxAndLayerNorm() {
        let x = random([3, 5], seed: 7, low: -4, high: 4)
        let s = x.softmax().toArray(), v = x.toArray()
        for r in 0..<3 {
            let row = v[(r * 5)..<(r * 5 + 5)]
            let m = row.max()!, e = row.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
            expectClose(Array(s[(r * 5)..<(r * 5 + 5)]), e.map { $0 / z }, tolerance: 1e-6)
        }
        expectClose(x.logSoftmax().toArray(), s.map { Foundation.log($0) }, tolerance: 1e-5)

        let w = random([5], seed: 8), b = random([5], seed: 9)
        let y = x.layerNorm(weight: w, bias: b, eps: 1e-6).toArray()
        for r in 0..<3 {
            let row = v[(r * 5)..<(r * 5 + 5)]
            let mean = row.reduce(0, +) / 5
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 5
            let expected = row.enumerated().map { i, value in
                (value - mean) / (variance + 1e-6).squareRoot() * w.toArray()[i] + b.toArray()[i]
            }
            expectClose(Array(y[(r * 5)..<(r * 5 + 5)]), expected, tolerance: 1e-5)
        }
    }

    @Test func reductionsAndArgmax() {
        let x = Tensor([1, 5, 3, 4, 2, 6], shape: [2, 3])
        #expect(x.sum().item() == 21)
        #expect(x.sum(axis: 0).toArray() == [5, 7, 9])
        #expect(x.mean(axis: 1, keepDim: true).shape == [2, 1])
        #expect(x.mean(axis: 1).toArray() == [3, 4])
        #expect(x.max(axis: 1).toArray() == [5, 6])
        #expect(x.argmax(axis: 1) == [1, 2])
        #expect(x.argmax(axis: 0) == [1, 0, 1])
    }

    @Test func layoutOps() {
        let x = Tensor((0..<24).map(Float.init), shape: [2, 3, 4])
        let p = x.permute([2, 0, 1])
        #expect(p.shape == [4, 2, 3])
        #expect(p.toArray()[0..<6] == [0, 4, 8, 12, 16, 20])
        #expect(x.slice(axis: 2, start: 1, length: 2).toArray()[0..<4] == [1, 2, 5, 6])
        #expect(x.slice(axis: 0, start: 1, length: 1).toArray().first == 12)
        let c = Tensor.concat([x, x.slice(axis: 1, start: 0, length: 1)], axis: 1)
        #expect(c.shape == [2, 4, 4])
        #expect(c.toArray()[12..<16] == [0, 1, 2, 3])
        let g = x.gather(axis: 1, [[2], [0]])
        #expect(g.toArray() == [8, 9, 10, 11, 12, 13, 14, 15])
        #expect(x.indexSelect(axis: 2, [3, 0]).toArray()[0..<2] == [3, 0])
        #expect(Tensor.oneHot([2, 0], classes: 3).toArray() == [0, 0, 1, 1, 0, 0])
    }

    @Test func viewsShareStorageAndRanksUpToSix() {
        let x = Tensor.zeros([1, 2, 1, 3, 1, 2])
        let r = x.reshape([12])
        r.pointer[5] = 7
        #expect(x.toArray()[5] == 7)
        #expect(x.permute([5, 4, 3, 2, 1, 0]).shape == [2, 1, 3, 1, 2, 1])
        #expect((x + Tensor.ones([2])).sum().item() == 19)
    }

    @Test func maskingAndDropout() {
        let x = Tensor([1, 2, 3, 4], shape: [2, 2])
        let mask = Tensor([0, 1, 1, 0], shape: [2, 2])
        #expect(x.maskedFill(mask, value: -1).toArray() == [1, -1, -1, 4])
        #expect(Tensor.where(mask, x, Tensor.zeros([2, 2])).toArray() == [0, 2, 3, 0])
        var rng = SeededGenerator(seed: 1)
        let dropped = Tensor.ones([10_000]).dropout(0.25, using: &rng).toArray()
        let zeros = dropped.filter { $0 == 0 }.count
        #expect(abs(zeros - 2500) < 200, "\(zeros) zeros of 10000 at p = 0.25")
        #expect(dropped.filter { $0 != 0 }.allSatisfy { abs($0 - 4.0 / 3.0) < 1e-6 })
        var again = SeededGenerator(seed: 1)
        #expect(Tensor.ones([10_000]).dropout(0.25, using: &again).toArray() == dropped)
    }
}

/// The semantics of the tape.
@Suite struct AutogradTests {
    @Test func gradientsAccumulateAcrossUsesAndCalls() {
        let x = Tensor([2, 3], shape: [2], requiresGrad: true)
        (x * x + x).sum().backward()  // d/dx = 2x + 1
        #expect(x.grad?.toArray() == [5, 7])
        (x * 3).sum().backward()  // adds 3
        #expect(x.grad?.toArray() == [8, 10])
    }

    @Test func noGradRecordsNothingAndDetachCuts() {
        let x = Tensor([1, 2], shape: [2], requiresGrad: true)
        let y = Autograd.withNoGrad { x * 2 }
        #expect(!y.requiresGrad && y.isLeaf)
        let z = (x.detach() * x).sum()  // only the second factor carries gradient
        z.backward()
        #expect(x.grad?.toArray() == [1, 2])
    }

    @Test func sharedSubexpressionsGetSummedGradients() {
        let x = Tensor([0.5, -1], shape: [2], requiresGrad: true)
        let h = x.tanh()
        (h * h + h).sum().backward()  // (2h + 1)(1 - h²)
        let expected = x.toArray().map { v -> Float in
            let h = Foundation.tanh(v); return (2 * h + 1) * (1 - h * h)
        }
        expectClose(x.grad!.toArray(), expected, tolerance: 1e-6)
    }
}
