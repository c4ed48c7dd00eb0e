import Foundation
import Testing
import Tensors

/// Compares the autograd gradient of `f` at `inputs` with central finite differences.
///
/// The scalar checked is L = Σ f(inputs) ⊙ W for a fixed random W, so every output element matters with its own
/// weight. L is summed in Double; the step is 1e-2 (float32 rounding makes smaller steps noisier, not better).
/// The gradients must agree within `tolerance` relative to the largest numerical gradient of each input.
public func checkGradients(
    _ inputs: [Tensor], tolerance: Float = 1e-2, step: Float = 1e-2, seed: UInt64 = 7,
    sourceLocation: SourceLocation = #_sourceLocation, _ f: ([Tensor]) -> Tensor
) {
    for x in inputs { x.requiresGrad = true; x.grad = nil }
    let output = f(inputs)
    var rng = SeededGenerator(seed: seed)
    let weights = Tensor.randn(output.shape, using: &rng)
    (output * weights).sum().backward()

    func loss() -> Double {
        Autograd.withNoGrad {
            let out = f(inputs).toArray(), w = weights.toArray()
            return zip(out, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
    }
    for (index, x) in inputs.enumerated() {
        let analytic = x.grad?.toArray() ?? [Float](repeating: 0, count: x.count)
        var numeric = [Float](repeating: 0, count: x.count)
        let p = x.pointer
        for i in 0..<x.count {
            let saved = p[i]
            p[i] = saved + step
            let plus = loss()
            p[i] = saved - step
            let minus = loss()
            p[i] = saved
            numeric[i] = Float((plus - minus) / Double(2 * step))
        }
        let scale = max(numeric.map(abs).max() ?? 0, 1e-3)
        let worst = zip(analytic, numeric).map { abs($0 - $1) }.max() ?? 0
        #expect(
            worst <= tolerance * scale,
            "input \(index) \(x.shape): max |analytic - numeric| = \(worst), scale \(scale)",
            sourceLocation: sourceLocation)
    }
}

public func random(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    return Tensor.uniform(shape, low: low, high: high, using: &rng)
}

public func expectClose(
    _ a: [Float], _ b: [Float], tolerance: Float = 1e-5,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(a.count == b.count, "lengths \(a.count) vs \(b.count)", sourceLocation: sourceLocation)
    let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
    #expect(worst <= tolerance, "max difference \(worst) > \(tolerance)", sourceLocation: sourceLocation)
}
