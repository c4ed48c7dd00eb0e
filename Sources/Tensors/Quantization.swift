import CQuantization
import Foundation

/// int8 inference (`--precision int8`), as ONNX Runtime's dynamic quantisation: no calibration. A linear layer's
/// weight [out, in] is rounded once to int8 with one symmetric scale per output channel; at each product the
/// activations are rounded to int8 with one symmetric scale per sample (an entry of their first axis: an image's
/// tokens, a text's; a row of a 2-D input), measured on the spot; the int32 accumulator comes back as float32:
///
///     y[s, m, n] = (Σ_k qx[s, m, k] · qw[n, k]) · weightScale[n] · activationScale[s] + bias[n]   (then the activation)
///
/// One scale per sample rather than per batch (ONNX Runtime's choice) keeps an image's result independent of the
/// images batched with it, which a server batching requests as they come needs. (oneDNN 2.6 fuses only one scale
/// per product into its fast kernels, so each sample is its own product.)
///
/// The product takes float32 or bfloat16 activations and gives `outputDType`: float32, or bfloat16 where the CPU
/// multiplies bf16 natively, so that what runs between the int8 products (attention's own products and softmax)
/// runs at the bf16 rate while LayerNorm and the residual stream stay float32, as bf16 inference does.
///
/// The backends take this path for any `matmul` whose right operand is a weight with `quantized` set, read as
/// [in, out] (x · Wᵀ: what `linear` asks); activations that are not all finite take the float32 path instead, so a
/// NaN goes on as it would in fp32.
public final class QuantizedWeight: @unchecked Sendable {
    /// The weight rounded to int8, [out, in] as the float weight is laid out.
    public let values: [Int8]
    /// One scale per output channel: max |w[n, :]| / 127 (0 for a row of zeros).
    public let scales: [Float]
    public let outFeatures: Int, inFeatures: Int
    /// The dtype of the product's output.
    public let outputDType: DType

    /// Per output channel, symmetric: qw[n, k] = round(w[n, k] · 127 / max |w[n, :]|), ties to even. Nil when a
    /// value is not finite (the layer then stays float32).
    init?(_ weight: Tensor, outputDType: DType) {
        precondition(weight.rank == 2 && weight.dtype == .float32, "quantising needs a float32 [out, in] weight, got \(weight.shape)")
        let (rows, columns) = (weight.shape[0], weight.shape[1])
        let source = weight.pointer
        var values = [Int8](repeating: 0, count: rows * columns), scales = [Float](repeating: 0, count: rows)
        for row in 0..<rows {
            let start = source + row * columns
            let largest = sv_abs_max(start, columns)
            guard largest.isFinite else { return nil }
            guard largest > 0 else { continue }
            scales[row] = largest / 127
            values.withUnsafeMutableBufferPointer { sv_quantize_s8(start, $0.baseAddress! + row * columns, columns, 127 / largest) }
        }
        (self.values, self.scales, outFeatures, inFeatures, self.outputDType) = (values, scales, rows, columns, outputDType)
    }

    /// values · scales, [out, in]: what an evicted weight's float32 memory is rebuilt from.
    func dequantize(into destination: UnsafeMutablePointer<Float>) {
        for n in 0..<outFeatures {
            for k in 0..<inFeatures { destination[n * inFeatures + k] = Float(values[n * inFeatures + k]) * scales[n] }
        }
    }

    /// What a backend keeps per weight (its packed copies and primitives, which bake in `scales`), by its own keys.
    private var backendState: [String: AnyObject] = [:]
    private let lock = NSLock()

    func backendState<T: AnyObject>(_ key: String, make: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        if let state = backendState[key] as? T { return state }
        let made = make()
        backendState[key] = made
        return made
    }
}

/// The per-product half of dynamic quantisation, shared by the backends so that both round the same way.
public enum DynamicQuantization {
    /// The scale of activations whose largest magnitude is `absMax` (and its inverse, which the rounding multiplies
    /// by): absMax / 127, 1 for all zeros, nil when absMax is not finite.
    public static func scale(absMax: Float) -> (scale: Float, inverse: Float)? {
        guard absMax.isFinite else { return nil }
        guard absMax > 0 else { return (1, 1) }
        return (absMax / 127, 127 / absMax)
    }

    /// Whether `matmul(a, b, …)` takes the int8 path: b a quantised weight read transposed, a float32 rows.
    static func applies(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?) -> QuantizedWeight? {
        guard let quantized = b.quantized, transposeB, !transposeA, a.count > 0, quantized.outFeatures > 0,
            a.shape.last == quantized.inFeatures, bias == nil || bias?.dtype == .float32
        else { return nil }
        return quantized
    }
}

extension Backend {
    /// The float32 product a · weightᵀ where the int8 one cannot run (activations that are not finite), in the dtype
    /// the int8 one gives: on a view of the weight that carries no int8 copy.
    func productWithoutQuantization(_ a: Tensor, _ weight: Tensor, _ quantized: QuantizedWeight, bias: Tensor?, activation: UnaryOp?)
        -> Tensor
    {
        let product = matmul(
            a.dtype == .float32 ? a : a.converted(to: .float32), weight.rawView(weight.shape), transposeA: false, transposeB: true,
            bias: bias, activation: activation)
        return product.dtype == quantized.outputDType ? product : product.converted(to: quantized.outputDType)
    }
}

extension Tensor {
    /// Rounds this weight ([out, in], float32, frozen for inference) to int8 once, for `--precision int8`: every
    /// `linear` on it then runs as an int8 product (`QuantizedWeight`) giving `outputDType`. Inference reads only
    /// the int8 copy, so a weight that is a whole storage gives its float32 memory back to the system (ViT-B/16: 331
    /// MB); what reads the values later (the float32 product of a non-finite input) reads the int8 values
    /// dequantised. Returns whether it was quantised (not when a value is not finite).
    @discardableResult
    public func quantizeForInference(outputDType: DType = .float32) -> Bool {
        precondition(isFrozenForInference, "quantizeForInference() on a weight that is not frozen for inference")
        if quantized?.outputDType != outputDType { quantized = QuantizedWeight(self, outputDType: outputDType) }
        guard let quantized else { return false }
        if offset == 0 && count == storage.count && storage.isResident {
            storage.evict { destination in quantized.dequantize(into: destination.assumingMemoryBound(to: Float.self)) }
        }
        return true
    }

}
