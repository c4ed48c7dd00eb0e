import CDNNL
import CQuantization
import Foundation

/// The int8 products of `--precision int8` (`QuantizedWeight` says what they compute) on oneDNN's int8 matmul:
/// `brg:avx512_core_vnni` where the CPU has VNNI, its AVX2 int8 gemm elsewhere.
extension CPUBackend {
    /// One weight's primitive for a row count and epilogue, with the weight packed in the layout it chose. The
    /// per-channel weight scales are the primitive's constant output scales (a runtime scale there would make
    /// oneDNN 2.6 fall back from brgemm to its slower gemm); the activation scale, known only per call, and the
    /// bias are binary post-ops: dst = activation((acc · weightScale[n]) · activationScale + bias[n]).
    final class QuantizedKernel {
        let primitive: CachedPrimitive
        let packed: PackedWeights
        let source: dnnl_memory_desc_t, destination: dnnl_memory_desc_t
        let scalar: dnnl_memory_desc_t, bias: dnnl_memory_desc_t

        init(
            _ weight: QuantizedWeight, rows: Int, hasBias: Bool, activation: UnaryOp?,
            epilogue: (UnaryOp) -> (dnnl_alg_kind_t, Float, Float)
        ) {
            let (k, n) = (weight.inFeatures, weight.outFeatures)
            func desc(_ dims: [Int], _ type: dnnl_data_type_t, strides: [Int]? = nil, any: Bool = false) -> dnnl_memory_desc_t {
                var md = dnnl_memory_desc_t()
                let d = dims.map { dnnl_dim_t($0) }
                let s = (strides ?? Shape.contiguousStrides(dims)).map { dnnl_dim_t($0) }
                let status =
                    any
                    ? dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), d, type, dnnl_format_tag_any)
                    : dnnl_memory_desc_init_by_strides(&md, Int32(dims.count), d, type, s)
                OneDNN.check(status, "describing int8 matmul memory \(dims)")
                return md
            }
            source = desc([rows, k], dnnl_s8)
            destination = desc([rows, n], weight.outputDType.dnnl)
            scalar = desc([1, 1], dnnl_f32)
            bias = desc([1, n], dnnl_f32)
            let what = "int8 matmul [\(rows), \(k)] x [\(k), \(n)]"
            var op = dnnl_matmul_desc_t()
            var sourceDesc = source, weightsDesc = desc([k, n], dnnl_s8, any: true), destinationDesc = destination
            OneDNN.check(dnnl_matmul_desc_init(&op, &sourceDesc, &weightsDesc, nil, &destinationDesc), "describing \(what)")
            var attributes: dnnl_primitive_attr_t?, postOps: dnnl_post_ops_t?
            OneDNN.check(dnnl_primitive_attr_create(&attributes), "creating primitive attributes")
            OneDNN.check(dnnl_post_ops_create(&postOps), "creating post-ops")
            defer {
                dnnl_post_ops_destroy(postOps)
                dnnl_primitive_attr_destroy(attributes)
            }
            weight.scales.withUnsafeBufferPointer { scales in
                OneDNN.check(
                    dnnl_primitive_attr_set_output_scales(attributes, dnnl_dim_t(n), 1 << 1, scales.baseAddress), "setting \(what)'s scales"
                )
            }
            var scalarDesc = scalar, biasDesc = bias
            OneDNN.check(dnnl_post_ops_append_binary(postOps, dnnl_binary_mul, &scalarDesc), "appending the activation scale")
            if hasBias { OneDNN.check(dnnl_post_ops_append_binary(postOps, dnnl_binary_add, &biasDesc), "appending the bias") }
            if let activation {
                let (alg, alpha, beta) = epilogue(activation)
                OneDNN.check(dnnl_post_ops_append_eltwise(postOps, 1, alg, alpha, beta), "appending \(activation)")
            }
            OneDNN.check(dnnl_primitive_attr_set_post_ops(attributes, postOps), "setting post-ops")
            primitive = CachedPrimitive(descriptor: PrimitiveCache.descriptor(&op, attributes: attributes, "creating \(what)"))
            // The weight [out, in] read as [in, out] (strides [1, in]), packed once into the chosen layout; for s8
            // sources on VNNI that layout carries the compensation oneDNN adds for them, which the reorder computes.
            let plain = desc([k, n], dnnl_s8, strides: [1, k])
            let chosen = dnnl_primitive_desc_query_md(primitive.descriptor, dnnl_query_weights_md, 0)!.pointee
            packed = weight.values.withUnsafeBytes { bytes in
                PackedWeights(UnsafeMutableRawPointer(mutating: bytes.baseAddress!), plain: plain, packed: chosen, key: what)
            }
        }
    }

    /// a [S, ..., K] (float32 or bfloat16) · quantised bᵀ + bias, with `activation`, one activation scale per sample (entry of
    /// a's first axis) and so one product per sample; nil when a holds a value that is not finite.
    func quantizedProduct(_ a: Tensor, _ weight: QuantizedWeight, bias: Tensor?, activation: UnaryOp?) -> Tensor? {
        let (k, n) = (weight.inFeatures, weight.outFeatures)
        let samples = a.shape[0], rows = a.count / k / samples, length = rows * k  // each sample: [rows, K]
        var scales = [Float](repeating: 0, count: samples)
        let activations = UnsafeMutablePointer<Int8>.allocate(capacity: a.count)  // a's shape, int8
        defer { activations.deallocate() }
        let bfloat16 = a.raw.assumingMemoryBound(to: UInt16.self)  // read only when a is bfloat16
        for sample in 0..<samples {
            let offset = sample * length
            let largest = a.dtype == .float32 ? sv_abs_max(a.pointer + offset, length) : sv_abs_max_bf16(bfloat16 + offset, length)
            guard let (scale, inverse) = DynamicQuantization.scale(absMax: largest) else { return nil }
            if a.dtype == .float32 {
                sv_quantize_s8(a.pointer + offset, activations + offset, length, inverse)
            } else {
                sv_quantize_s8_bf16(bfloat16 + offset, activations + offset, length, inverse)
            }
            scales[sample] = scale
        }
        let kernel = weight.backendState("cpu \(rows) bias:\(bias != nil) act:\(String(describing: activation))") {
            QuantizedKernel(weight, rows: rows, hasBias: bias != nil, activation: activation, epilogue: eltwiseAlgorithm)
        }
        let out = Tensor(uninitializedShape: Array(a.shape.dropLast()) + [n], dtype: weight.outputDType)
        scales.withUnsafeMutableBufferPointer { scales in
            for sample in 0..<samples {
                var args = [
                    (Arg.src, kernel.source, UnsafeMutableRawPointer(activations + sample * length)),
                    (Arg.weights, kernel.packed.desc, kernel.packed.pointer),
                    (Arg.dst, kernel.destination, out.raw + sample * rows * n * out.dtype.byteSize),
                    (Arg.postOp(0), kernel.scalar, UnsafeMutableRawPointer(scales.baseAddress! + sample))
                ]
                if let bias { args.append((Arg.postOp(1), kernel.bias, bias.raw)) }
                OneDNN.execute(kernel.primitive.primitive, args)
            }
        }
        return out
    }
}
