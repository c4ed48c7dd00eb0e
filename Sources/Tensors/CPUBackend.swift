import CDNNL
import Foundation

/// The CPU backend: every kernel is a cached oneDNN primitive, except the index shuffles (argmax, gather, scatter)
/// which are row copies in Swift.
public final class CPUBackend: Backend {
    public static let shared = CPUBackend()

    /// True when some of `tensors` are bfloat16 and oneDNN cannot compute bf16 on this CPU (no AVX-512): the
    /// kernel then runs on float32 copies and rounds its result back to bfloat16. Same numbers to bf16 rounding,
    /// none of the speed.
    private func widensBFloat16(_ tensors: Tensor?...) -> Bool {
        !OneDNN.computesBFloat16 && tensors.contains { $0?.dtype == .bfloat16 }
    }

    // MARK: - Matmul

    public func matmul(
        _ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?,
        activation: UnaryOp?
    ) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs rank >= 2 operands, got \(a.shape) and \(b.shape)")
        if let quantized = DynamicQuantization.applies(a, b, transposeA: transposeA, transposeB: transposeB, bias: bias) {
            return quantizedProduct(a, quantized, bias: bias, activation: activation)
                ?? productWithoutQuantization(a, b, quantized, bias: bias, activation: activation)
        }
        // A 2-D right operand (a weight) against a batched left one: fold the batch into M, one big product.
        if b.rank == 2 && a.rank > 2 && !transposeA {
            let lead = Array(a.shape.dropLast())
            let out = matmul(
                a.rawView([lead.reduce(1, *), a.shape[a.rank - 1]]), b, transposeA: false,
                transposeB: transposeB, bias: bias, activation: activation)
            return out.rawView(lead + [out.shape[1]])
        }
        precondition(a.dtype == b.dtype, "matmul of \(a.dtype) by \(b.dtype): cast one of them")
        if widensBFloat16(a, b, bias) {
            return matmul(
                a.converted(to: .float32), b.converted(to: .float32), transposeA: transposeA, transposeB: transposeB,
                bias: bias?.converted(to: .float32), activation: activation
            ).converted(to: a.dtype)
        }
        if transposeA && a.rank == 2 && b.rank == 2 && bias == nil && activation == nil && a.dtype == .float32 {
            return transposedLeftProduct(a, b, transposeB: transposeB)
        }
        let rank = max(a.rank, b.rank)
        func logical(_ t: Tensor, _ transpose: Bool) -> (dims: [Int], strides: [Int]) {
            var dims = Shape.padded(t.shape, to: rank)
            var strides = Shape.contiguousStrides(dims)
            if transpose {
                dims.swapAt(rank - 2, rank - 1)
                strides.swapAt(rank - 2, rank - 1)
            }
            return (dims, strides)
        }
        let (aDims, aStrides) = logical(a, transposeA)
        let (bDims, bStrides) = logical(b, transposeB)
        let m = aDims[rank - 2], k = aDims[rank - 1], n = bDims[rank - 1]
        precondition(
            bDims[rank - 2] == k, "matmul inner sizes differ: \(a.shape)\(transposeA ? "ᵀ" : "") @ \(b.shape)\(transposeB ? "ᵀ" : "")")
        let batch = Shape.broadcast(Array(aDims.dropLast(2)), Array(bDims.dropLast(2)))
        let outDims = batch + [m, n]
        if let bias { precondition(bias.count == n, "bias of \(bias.count) values for \(n) output columns") }

        // The product is in the operands' dtype; bf16 products accumulate in f32 inside oneDNN.
        let dtype = a.dtype
        let aDesc = OneDNN.memoryDesc(aDims, strides: aStrides, dtype: dtype)
        let bDesc = OneDNN.memoryDesc(bDims, strides: bStrides, dtype: dtype)
        let biasDesc = OneDNN.memoryDesc([Int](repeating: 1, count: rank - 1) + [n], dtype: bias?.dtype ?? .float32)
        let outDesc = OneDNN.memoryDesc(outDims, dtype: dtype)
        let key =
            "matmul \(dtype) \(aDims) \(aStrides) \(bDims) \(bStrides) bias:\(bias?.dtype.rawValue ?? "none") act:\(String(describing: activation))"
        func makePrimitive(_ key: String, weights: dnnl_memory_desc_t) -> CachedPrimitive {
            PrimitiveCache.get(key) {
                var op = dnnl_matmul_desc_t()
                var aDesc = aDesc, bDesc = weights, biasDesc = biasDesc, outDesc = outDesc
                let status =
                    bias != nil
                    ? dnnl_matmul_desc_init(&op, &aDesc, &bDesc, &biasDesc, &outDesc)
                    : dnnl_matmul_desc_init(&op, &aDesc, &bDesc, nil, &outDesc)
                OneDNN.check(status, "describing matmul \(key)")
                return withAttributes(postOp: activation) { attributes in
                    PrimitiveCache.descriptor(&op, attributes: attributes, "creating matmul \(key)")
                }
            }
        }
        var primitive: CachedPrimitive?
        // The packed copy when there is one; b's own values are read only otherwise (reading them would bring an
        // evicted weight's plain memory back).
        var packedWeights: (dnnl_memory_desc_t, UnsafeMutableRawPointer)?
        if b.isFrozenForInference {
            // A frozen weight (inference) is read in the layout the primitive picks when left free, packed once.
            // Only a blocked layout (the AVX-512 kernels') is worth the copy; where the free choice is a plain
            // layout (AVX2's gemm) the plain primitive runs on the weight as it is, with no second copy of it
            // (such a copy raised ViT-B predict's peak RSS from 712 to 1039 MiB for no speed).
            let packedKey = "packed " + key
            let free = makePrimitive(packedKey, weights: OneDNN.anyLayoutDesc(bDims, dtype: dtype))
            let chosen = dnnl_primitive_desc_query_md(free.descriptor, dnnl_query_weights_md, 0)!.pointee
            var plain = bDesc, chosenCopy = chosen
            let blocked = chosen.format_kind == dnnl_blocked && chosen.format_desc.blocking.inner_nblks > 0
            if blocked && dnnl_memory_desc_equal(&chosenCopy, &plain) == 0 {
                let pack = b.packedCopies[packedKey] ?? packFrozenWeight(b, plain: bDesc, packed: chosen, key: packedKey)
                b.packedCopies[packedKey] = pack
                packedWeights = (pack.desc, pack.pointer)
                primitive = free
            }
        }
        let chosenPrimitive = primitive ?? makePrimitive(key, weights: bDesc)
        let out = Tensor(uninitializedShape: outDims, dtype: dtype)
        let weights = packedWeights ?? (bDesc, b.raw)
        var args = [(Arg.src, aDesc, a.raw), (Arg.weights, weights.0, weights.1), (Arg.dst, outDesc, out.raw)]
        if let bias { args.append((Arg.bias, biasDesc, bias.raw)) }
        OneDNN.execute(chosenPrimitive.primitive, args)
        return out
    }

    /// The copy of frozen weight `b` in layout `packed`: one it already has in that layout (another batch size's
    /// primitive often picks the same), else a reorder from one of its packs or from the plain values. A weight
    /// that is a whole storage then gives its plain memory back (`Storage.evict`): inference reads only the pack,
    /// and anything that reads the plain values later gets them reordered back. Without this, packing doubled the
    /// weights' memory on AVX-512 (ViT-B/16 predict: 728 MB peak RSS for 331 MB of fp32 weights).
    func packFrozenWeight(_ b: Tensor, plain: dnnl_memory_desc_t, packed: dnnl_memory_desc_t, key: String)
        -> PackedWeights
    {
        var packed = packed
        for existing in b.packedCopies.values {
            var layout = existing.desc
            if dnnl_memory_desc_equal(&layout, &packed) != 0 { return existing }
        }
        let pack: PackedWeights
        if !b.storage.isResident, let (sourceKey, source) = b.packedCopies.min(by: { $0.key < $1.key }) {
            pack = PackedWeights(source.pointer, plain: source.desc, packed: packed, key: key + " from " + sourceKey)
        } else {
            pack = PackedWeights(b.raw, plain: plain, packed: packed, key: key)
        }
        if b.offset == 0 && b.count == b.storage.count {
            b.storage.evict { destination in
                OneDNN.reorder("unpacking " + key, from: pack.desc, pack.pointer, to: plain, destination)
            }
        }
        return pack
    }

    /// aᵀ [M, K] · op(b) for 2-D operands through sgemm: weight gradients take this path.
    private func transposedLeftProduct(_ a: Tensor, _ b: Tensor, transposeB: Bool) -> Tensor {
        let (k, m) = (a.shape[0], a.shape[1])
        let n = transposeB ? b.shape[0] : b.shape[1]
        precondition(
            (transposeB ? b.shape[1] : b.shape[0]) == k,
            "matmul inner sizes differ: \(a.shape)ᵀ @ \(b.shape)\(transposeB ? "ᵀ" : "")")
        let out = Tensor(uninitializedShape: [m, n])
        if k == 0 { out.pointer.update(repeating: 0, count: out.count); return out }
        OneDNN.sgemm(
            transposeA: true, transposeB: transposeB, m: m, n: n, k: k, a: a.pointer, lda: m,
            b: b.pointer, ldb: b.shape[1], c: out.pointer, ldc: n)
        return out
    }

    /// Runs `body` with a primitive attribute carrying `postOp` as an eltwise post-op (or no attribute).
    private func withAttributes<T>(postOp: UnaryOp?, _ body: (dnnl_primitive_attr_t?) -> T) -> T {
        guard let postOp else { return body(nil) }
        var attributes: dnnl_primitive_attr_t?
        var postOps: dnnl_post_ops_t?
        OneDNN.check(dnnl_primitive_attr_create(&attributes), "creating primitive attributes")
        OneDNN.check(dnnl_post_ops_create(&postOps), "creating post-ops")
        let (alg, alpha, beta) = eltwiseAlgorithm(postOp)
        OneDNN.check(dnnl_post_ops_append_eltwise(postOps, 1, alg, alpha, beta), "appending \(postOp) post-op")
        OneDNN.check(dnnl_primitive_attr_set_post_ops(attributes, postOps), "setting post-ops")
        defer {
            dnnl_post_ops_destroy(postOps)
            dnnl_primitive_attr_destroy(attributes)
        }
        return body(attributes)
    }

    // MARK: - Attention

    /// A matmul operand or result where it lies: raw memory, logical dims and element strides.
    private struct StridedView {
        var pointer: UnsafeMutableRawPointer
        var dims: [Int]
        var strides: [Int]
        init(_ pointer: UnsafeMutableRawPointer, _ dims: [Int], _ strides: [Int]? = nil) {
            (self.pointer, self.dims, self.strides) = (pointer, dims, strides ?? Shape.contiguousStrides(dims))
        }
        /// The last two axes swapped (no copy).
        var transposed: StridedView {
            var view = self
            view.dims.swapAt(dims.count - 2, dims.count - 1)
            view.strides.swapAt(dims.count - 2, dims.count - 1)
            return view
        }
    }

    /// out = a · b (· scale) on strided views: oneDNN's matmul takes any strides, so attention reads q, k and v
    /// inside the fused projection and writes the heads merged, without a reorder.
    private func matmul(_ a: StridedView, _ b: StridedView, into out: StridedView, dtype: DType, scale: Float? = nil) {
        let aDesc = OneDNN.memoryDesc(a.dims, strides: a.strides, dtype: dtype)
        let bDesc = OneDNN.memoryDesc(b.dims, strides: b.strides, dtype: dtype)
        let outDesc = OneDNN.memoryDesc(out.dims, strides: out.strides, dtype: dtype)
        let key = "matmul \(dtype) \(a.dims) \(a.strides) \(b.dims) \(b.strides) -> \(out.dims) \(out.strides) scale:\(scale ?? 1)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_matmul_desc_t()
            var aDesc = aDesc, bDesc = bDesc, outDesc = outDesc
            OneDNN.check(dnnl_matmul_desc_init(&op, &aDesc, &bDesc, nil, &outDesc), "describing \(key)")
            return withAttributes(postOp: scale.map { .affine(scale: $0, shift: 0) }) { attributes in
                PrimitiveCache.descriptor(&op, attributes: attributes, "creating \(key)")
            }
        }
        OneDNN.execute(primitive.primitive, [(Arg.src, aDesc, a.pointer), (Arg.weights, bDesc, b.pointer), (Arg.dst, outDesc, out.pointer)])
    }

    /// The q, k and v of every head inside qkv [B, N, 3·D], as [B, heads, N, D/heads] views.
    private func headViews(_ qkv: Tensor, heads: Int) -> (q: StridedView, k: StridedView, v: StridedView) {
        let (b, n, d) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3), hd = d / heads
        let dims = [b, heads, n, hd], strides = [n * 3 * d, hd, 3 * d, 1]
        let bytes = d * qkv.dtype.byteSize
        return (
            StridedView(qkv.raw, dims, strides), StridedView(qkv.raw + bytes, dims, strides),
            StridedView(qkv.raw + 2 * bytes, dims, strides)
        )
    }

    /// [B, N, D] seen as [B, heads, N, D/heads]: the heads merged, in place.
    private func mergedHeads(_ x: Tensor, heads: Int) -> StridedView {
        let (b, n, d) = (x.shape[0], x.shape[1], x.shape[2])
        return StridedView(x.raw, [b, heads, n, d / heads], [n * d, d / heads, d, 1])
    }

    public func attention(qkv: Tensor, heads: Int, scale: Float) -> (output: Tensor, probabilities: Tensor) {
        if widensBFloat16(qkv) {
            let (output, probabilities) = attention(qkv: qkv.converted(to: .float32), heads: heads, scale: scale)
            return (output.converted(to: qkv.dtype), probabilities.converted(to: qkv.dtype))
        }
        let (b, n, d) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3), dtype = qkv.dtype
        let (q, k, v) = headViews(qkv, heads: heads)
        let scores = Tensor(uninitializedShape: [b, heads, n, n], dtype: dtype)  // q·kᵀ·scale
        matmul(q, k.transposed, into: StridedView(scores.raw, scores.shape), dtype: dtype, scale: scale)
        let probabilities = softmax(scores, log: false)
        let output = Tensor(uninitializedShape: [b, n, d], dtype: dtype)
        matmul(StridedView(probabilities.raw, probabilities.shape), v, into: mergedHeads(output, heads: heads), dtype: dtype)
        return (output, probabilities)
    }

    public func attentionBackward(gradOutput: Tensor, qkv: Tensor, probabilities: Tensor, heads: Int, scale: Float) -> Tensor {
        if widensBFloat16(qkv, gradOutput, probabilities) {
            return attentionBackward(
                gradOutput: gradOutput.converted(to: .float32), qkv: qkv.converted(to: .float32),
                probabilities: probabilities.converted(to: .float32), heads: heads, scale: scale
            ).converted(to: qkv.dtype)
        }
        let dtype = qkv.dtype
        let (q, k, v) = headViews(qkv, heads: heads)
        let gradQKV = Tensor(uninitializedShape: qkv.shape, dtype: dtype)  // every element written below
        let (dq, dk, dv) = headViews(gradQKV, heads: heads)
        let g = mergedHeads(gradOutput, heads: heads)
        let p = StridedView(probabilities.raw, probabilities.shape)
        matmul(p.transposed, g, into: dv, dtype: dtype)  // dV = Pᵀ·dO
        let gradProbabilities = Tensor(uninitializedShape: probabilities.shape, dtype: dtype)
        matmul(g, v.transposed, into: StridedView(gradProbabilities.raw, probabilities.shape), dtype: dtype)  // dP = dO·vᵀ
        let gradScores = softmaxBackward(gradOutput: gradProbabilities, output: probabilities, log: false)  // dS
        let s = StridedView(gradScores.raw, gradScores.shape)
        matmul(s, k, into: dq, dtype: dtype, scale: scale)  // dQ = dS·k·scale
        matmul(s.transposed, q, into: dk, dtype: dtype, scale: scale)  // dK = dSᵀ·q·scale
        return gradQKV
    }

    // MARK: - Elementwise

    public func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
        let outShape = Shape.broadcast(a.shape, b.shape)
        let dtype = Autocast.promoted(a.dtype, b.dtype)
        if widensBFloat16(a, b) {
            return binary(op, a.converted(to: .float32), b.converted(to: .float32)).converted(to: dtype)
        }
        var (a, b) = (a, b)
        // oneDNN broadcasts only the second source: swap when the op allows, else expand the first.
        if a.shape != outShape {
            if b.shape == outShape && [.add, .mul, .max, .min].contains(op) {
                swap(&a, &b)
            } else {
                let expanded = Tensor.zeros(outShape, dtype: a.dtype)
                binary(.add, expanded, a, into: expanded)
                a = expanded
            }
        }
        let out = Tensor(uninitializedShape: outShape, dtype: dtype)
        binary(op, a, b, into: out)
        return out
    }

    /// out = a (op) b where a and out have the same shape and b broadcasts to it; `out` may be `a`.
    func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, into out: Tensor) {
        // oneDNN 2.6's jit kernels need the first source in the destination's type; any other pairing takes its
        // reference kernel, which finds every element's offsets by integer division (30% of a bf16 HPM step went
        // there, adding float32 position embeddings to bf16 patches). Both compute in float32 and round once to the
        // destination, so converting first gives the same bits.
        if a.dtype != out.dtype {
            if out.dtype == .float32 {
                binary(op, a.converted(to: .float32), b, into: out)
            } else {
                let wide = Tensor(uninitializedShape: out.shape, dtype: .float32)
                binary(op, a.converted(to: .float32), b, into: wide)
                cast(wide, into: out)
            }
            return
        }
        let (outDims, bDims) = Self.mergedBroadcastAxes(out.shape, b.shape)
        let aDesc = OneDNN.memoryDesc(outDims, dtype: a.dtype)
        let outDesc = OneDNN.memoryDesc(outDims, dtype: out.dtype)
        let bDesc = OneDNN.memoryDesc(bDims, dtype: b.dtype)
        let key = "binary \(op) \(outDims) \(bDims) \(a.dtype) \(b.dtype) -> \(out.dtype)"
        let primitive = PrimitiveCache.getIfImplemented(key) {
            var desc = dnnl_binary_desc_t()
            var aDesc = aDesc, bDesc = bDesc, dDesc = outDesc
            OneDNN.check(dnnl_binary_desc_init(&desc, binaryAlgorithm(op), &aDesc, &bDesc, &dDesc), "describing \(key)")
            return PrimitiveCache.descriptorIfImplemented(&desc, "creating \(key)")
        }
        guard let primitive else {
            // oneDNN 2.6 has bf16 binary kernels for some broadcast patterns only: the others run in float32.
            precondition(out.dtype != .float32 || a.dtype != .float32 || b.dtype != .float32, "oneDNN has no \(key)")
            let result = a.converted(to: .float32)
            binary(op, result, b.converted(to: .float32), into: result)
            cast(result, into: out)
            return
        }
        OneDNN.execute(
            primitive.primitive,
            [
                (Arg.src, aDesc, a.raw), (Arg.src1, bDesc, b.raw),
                (Arg.dst, outDesc, out.raw)
            ])
    }

    /// The output's and the broadcast operand's dimensions with axes of size 1 dropped and each run of adjacent axes
    /// that `b` either matches or broadcasts over merged into one: [B, N, D] and [B, 1, 1] -> [B, N·D] and [B, 1].
    /// Elementwise ops see the same elements in the same order, and oneDNN's jit kernels know only some broadcast
    /// patterns per rank: [B, N, D] against [B, 1, 1] (drop-path's mask) takes the reference kernel, [B, N·D]
    /// against [B, 1] does not.
    static func mergedBroadcastAxes(_ out: [Int], _ b: [Int]) -> (out: [Int], b: [Int]) {
        let rank = max(out.count, b.count)
        let out = Shape.padded(out, to: rank), b = Shape.padded(b, to: rank)
        var (mergedOut, mergedB): ([Int], [Int]) = ([], [])
        var lastBroadcasts: Bool?
        for (n, m) in zip(out, b) where n != 1 {
            let broadcasts = m == 1
            if broadcasts == lastBroadcasts {
                mergedOut[mergedOut.count - 1] *= n
                mergedB[mergedB.count - 1] *= m
            } else {
                mergedOut.append(n)
                mergedB.append(m)
            }
            lastBroadcasts = broadcasts
        }
        return mergedOut.isEmpty ? ([1], [1]) : (mergedOut, mergedB)
    }

    private func binaryAlgorithm(_ op: BinaryOp) -> dnnl_alg_kind_t {
        switch op {
        case .add: return dnnl_binary_add
        case .sub: return dnnl_binary_sub
        case .mul: return dnnl_binary_mul
        case .div: return dnnl_binary_div
        case .max: return dnnl_binary_max
        case .min: return dnnl_binary_min
        }
    }

    func eltwiseAlgorithm(_ op: UnaryOp) -> (dnnl_alg_kind_t, Float, Float) {
        switch op {
        case .exp: return (dnnl_eltwise_exp, 0, 0)
        case .log: return (dnnl_eltwise_log, 0, 0)
        case .sqrt: return (dnnl_eltwise_sqrt, 0, 0)
        case .tanh: return (dnnl_eltwise_tanh, 0, 0)
        case .relu: return (dnnl_eltwise_relu, 0, 0)
        case .sigmoid: return (dnnl_eltwise_logistic, 0, 0)
        case .abs: return (dnnl_eltwise_abs, 0, 0)
        case .square: return (dnnl_eltwise_square, 0, 0)
        case .geluErf: return (dnnl_eltwise_gelu_erf, 0, 0)
        case .geluTanh: return (dnnl_eltwise_gelu_tanh, 0, 0)
        case let .affine(scale, shift): return (dnnl_eltwise_linear, scale, shift)
        case let .power(scale, exponent): return (dnnl_eltwise_pow, scale, exponent)
        }
    }

    /// Elementwise ops ignore shape, so one flat descriptor per element count serves every shape.
    private func eltwiseForward(_ op: UnaryOp, count: Int, dtype: DType) -> (CachedPrimitive, dnnl_memory_desc_t) {
        let desc = OneDNN.memoryDesc([max(count, 1)], dtype: dtype)
        let key = "eltwise \(op) \(count) \(dtype)"
        let primitive = PrimitiveCache.get(key) {
            var op_ = dnnl_eltwise_desc_t()
            var d = desc
            let (alg, alpha, beta) = eltwiseAlgorithm(op)
            OneDNN.check(dnnl_eltwise_forward_desc_init(&op_, dnnl_forward_training, alg, &d, alpha, beta), "describing \(key)")
            return PrimitiveCache.descriptor(&op_, "creating \(key)")
        }
        return (primitive, desc)
    }

    public func unary(_ op: UnaryOp, _ x: Tensor) -> Tensor {
        if widensBFloat16(x) { return unary(op, x.converted(to: .float32)).converted(to: x.dtype) }
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        if x.count == 0 { return out }
        let (primitive, desc) = eltwiseForward(op, count: x.count, dtype: x.dtype)
        OneDNN.execute(primitive.primitive, [(Arg.src, desc, x.raw), (Arg.dst, desc, out.raw)])
        return out
    }

    public func unaryBackward(_ op: UnaryOp, gradOutput: Tensor, input: Tensor) -> Tensor {
        precondition(gradOutput.dtype == input.dtype, "a \(gradOutput.dtype) gradient for a \(input.dtype) input")
        if widensBFloat16(input) {
            return unaryBackward(op, gradOutput: gradOutput.converted(to: .float32), input: input.converted(to: .float32))
                .converted(to: input.dtype)
        }
        let out = Tensor(uninitializedShape: input.shape, dtype: input.dtype)
        if input.count == 0 { return out }
        let (forward, desc) = eltwiseForward(op, count: input.count, dtype: input.dtype)
        let key = "eltwise backward \(op) \(input.count) \(input.dtype)"
        let primitive = PrimitiveCache.get(key) {
            var op_ = dnnl_eltwise_desc_t()
            var d = desc, dd = desc
            let (alg, alpha, beta) = eltwiseAlgorithm(op)
            OneDNN.check(dnnl_eltwise_backward_desc_init(&op_, alg, &dd, &d, alpha, beta), "describing \(key)")
            return PrimitiveCache.descriptor(&op_, hint: forward.descriptor, "creating \(key)")
        }
        OneDNN.execute(
            primitive.primitive,
            [
                (Arg.src, desc, input.raw), (Arg.diffDst, desc, gradOutput.raw),
                (Arg.diffSrc, desc, out.raw)
            ])
        return out
    }

    // MARK: - Softmax

    private func softmaxForward(rows: Int, columns: Int, log: Bool, dtype: DType) -> (CachedPrimitive, dnnl_memory_desc_t) {
        let desc = OneDNN.memoryDesc([rows, columns], dtype: dtype)
        let key = "softmax log:\(log) \(rows)x\(columns) \(dtype)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_softmax_v2_desc_t()
            var s = desc, d = desc
            OneDNN.check(
                dnnl_softmax_v2_forward_desc_init(
                    &op, dnnl_forward_training,
                    log ? dnnl_softmax_log : dnnl_softmax_accurate, &s, &d, 1),
                "describing \(key)")
            return PrimitiveCache.descriptor(&op, "creating \(key)")
        }
        return (primitive, desc)
    }

    public func softmax(_ x: Tensor, log: Bool) -> Tensor {
        precondition(x.rank >= 1, "softmax needs at least one axis")
        if widensBFloat16(x) { return softmax(x.converted(to: .float32), log: log).converted(to: x.dtype) }
        let columns = x.shape[x.rank - 1], rows = x.count / max(columns, 1)
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        if x.count == 0 { return out }
        let (primitive, desc) = softmaxForward(rows: rows, columns: columns, log: log, dtype: x.dtype)
        OneDNN.execute(primitive.primitive, [(Arg.src, desc, x.raw), (Arg.dst, desc, out.raw)])
        return out
    }

    public func softmaxBackward(gradOutput: Tensor, output: Tensor, log: Bool) -> Tensor {
        let columns = output.shape[output.rank - 1], rows = output.count / max(columns, 1)
        precondition(gradOutput.dtype == output.dtype, "a \(gradOutput.dtype) gradient for a \(output.dtype) output")
        if widensBFloat16(output) {
            return softmaxBackward(gradOutput: gradOutput.converted(to: .float32), output: output.converted(to: .float32), log: log)
                .converted(to: output.dtype)
        }
        let out = Tensor(uninitializedShape: output.shape, dtype: output.dtype)
        if output.count == 0 { return out }
        let (forward, desc) = softmaxForward(rows: rows, columns: columns, log: log, dtype: output.dtype)
        let key = "softmax backward log:\(log) \(rows)x\(columns) \(output.dtype)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_softmax_v2_desc_t()
            var ds = desc, dd = desc, d = desc
            OneDNN.check(
                dnnl_softmax_v2_backward_desc_init(
                    &op, log ? dnnl_softmax_log : dnnl_softmax_accurate,
                    &ds, &dd, &d, 1), "describing \(key)")
            return PrimitiveCache.descriptor(&op, hint: forward.descriptor, "creating \(key)")
        }
        if primitive.isReference && !log && output.dtype == .float32 {
            // Where oneDNN 2.6 has no jit softmax backward (as on this AVX2 host), its loop reference takes 48 ms on one
            // thread for the attention of an MAE decoder step (66560 rows of 65), these passes of jit kernels 22 ms:
            // dx = y ⊙ (dy − Σⱼ dyⱼ yⱼ), the row sums as a product with a vector of ones.
            let y = output.rawView([rows, columns]), dy = gradOutput.rawView([rows, columns])
            binary(.mul, dy, y, into: out.rawView([rows, columns]))  // dy ⊙ y
            let dots = sumAsMatmul(out.rawView([rows, columns]), to: [rows, 1], mean: false)!  // [R, 1]
            binary(.sub, dy, dots, into: out.rawView([rows, columns]))  // dy − Σ
            binary(.mul, out.rawView([rows, columns]), y, into: out.rawView([rows, columns]))
            return out
        }
        OneDNN.execute(
            primitive.primitive,
            [
                (Arg.dst, desc, output.raw), (Arg.diffDst, desc, gradOutput.raw),
                (Arg.diffSrc, desc, out.raw)
            ])
        return out
    }

    // MARK: - Layer normalisation

    private func layerNormFlags(weight: Tensor?, bias: Tensor?) -> UInt32 {
        (weight != nil ? dnnl_use_scale.rawValue : 0) | (bias != nil ? dnnl_use_shift.rawValue : 0)
    }

    /// The data in its dtype; the statistics, scale and shift stay float32 (oneDNN's rule, and where precision matters).
    private func layerNormForward(rows: Int, columns: Int, eps: Float, flags: UInt32, dtype: DType)
        -> (CachedPrimitive, dnnl_memory_desc_t, dnnl_memory_desc_t)
    {
        let data = OneDNN.memoryDesc([rows, columns], dtype: dtype)
        let stats = OneDNN.memoryDesc([rows])
        let key = "layernorm \(rows)x\(columns) eps:\(eps) flags:\(flags) \(dtype)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_layer_normalization_desc_t()
            var d = data, s = stats
            OneDNN.check(
                dnnl_layer_normalization_forward_desc_init(&op, dnnl_forward_training, &d, &s, eps, flags),
                "describing \(key)")
            return PrimitiveCache.descriptor(&op, "creating \(key)")
        }
        return (primitive, data, stats)
    }

    public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float)
        -> (output: Tensor, mean: Tensor, variance: Tensor)
    {
        if widensBFloat16(x) {
            let (out, mean, variance) = layerNorm(x.converted(to: .float32), weight: weight, bias: bias, eps: eps)
            return (out.converted(to: x.dtype), mean, variance)
        }
        let columns = x.shape[x.rank - 1], rows = x.count / columns
        let flags = layerNormFlags(weight: weight, bias: bias)
        let (primitive, data, stats) = layerNormForward(rows: rows, columns: columns, eps: eps, flags: flags, dtype: x.dtype)
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        let mean = Tensor(uninitializedShape: [rows]), variance = Tensor(uninitializedShape: [rows])
        let paramDesc = OneDNN.memoryDesc([columns])
        var args = [
            (Arg.src, data, x.raw), (Arg.dst, data, out.raw),
            (Arg.mean, stats, mean.raw), (Arg.variance, stats, variance.raw)
        ]
        if let weight { args.append((Arg.scale, paramDesc, weight.raw)) }
        if let bias { args.append((Arg.shift, paramDesc, bias.raw)) }
        OneDNN.execute(primitive.primitive, args)
        return (out, mean, variance)
    }

    public func layerNormBackward(
        gradOutput: Tensor, input: Tensor, mean: Tensor, variance: Tensor,
        weight: Tensor?, bias: Tensor?, eps: Float
    )
        -> (input: Tensor, weight: Tensor?, bias: Tensor?)
    {
        let columns = input.shape[input.rank - 1], rows = input.count / columns
        let flags = layerNormFlags(weight: weight, bias: bias)
        precondition(gradOutput.dtype == input.dtype, "a \(gradOutput.dtype) gradient for a \(input.dtype) input")
        if widensBFloat16(input) {
            let grads = layerNormBackward(
                gradOutput: gradOutput.converted(to: .float32), input: input.converted(to: .float32), mean: mean,
                variance: variance, weight: weight, bias: bias, eps: eps)
            return (grads.input.converted(to: input.dtype), grads.weight, grads.bias)
        }
        let (forward, data, stats) = layerNormForward(rows: rows, columns: columns, eps: eps, flags: flags, dtype: input.dtype)
        let key = "layernorm backward \(rows)x\(columns) eps:\(eps) flags:\(flags) \(input.dtype)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_layer_normalization_desc_t()
            var dd = data, d = data, s = stats
            OneDNN.check(
                dnnl_layer_normalization_backward_desc_init(
                    &op, flags != 0 ? dnnl_backward : dnnl_backward_data, &dd, &d, &s, eps, flags), "describing \(key)")
            return PrimitiveCache.descriptor(&op, hint: forward.descriptor, "creating \(key)")
        }
        let gradInput = Tensor(uninitializedShape: input.shape, dtype: input.dtype)
        let gradWeight = weight.map { Tensor(uninitializedShape: $0.shape) }
        let gradBias = bias.map { Tensor(uninitializedShape: $0.shape) }
        let paramDesc = OneDNN.memoryDesc([columns])
        var args = [
            (Arg.src, data, input.raw), (Arg.mean, stats, mean.raw), (Arg.variance, stats, variance.raw),
            (Arg.diffDst, data, gradOutput.raw), (Arg.diffSrc, data, gradInput.raw)
        ]
        if let weight, let gradWeight {
            args += [(Arg.scale, paramDesc, weight.raw), (Arg.diffScale, paramDesc, gradWeight.raw)]
        }
        if let bias, let gradBias {
            args += [(Arg.shift, paramDesc, bias.raw), (Arg.diffShift, paramDesc, gradBias.raw)]
        }
        OneDNN.execute(primitive.primitive, args)
        return (gradInput, gradWeight, gradBias)
    }

    // MARK: - Reductions

    public func reduce(_ op: ReduceOp, _ x: Tensor, to shape: [Int]) -> Tensor {
        precondition(shape.count == x.rank, "reduce keeps the rank: \(x.shape) -> \(shape)")
        if shape == x.shape { return x.copy() }
        if widensBFloat16(x) { return reduce(op, x.converted(to: .float32), to: shape).converted(to: x.dtype) }
        if op == .sum || op == .mean, let sum = sumAsMatmul(x, to: shape, mean: op == .mean) { return sum }
        let src = OneDNN.memoryDesc(x.shape, dtype: x.dtype), dst = OneDNN.memoryDesc(shape, dtype: x.dtype)
        let key = "reduce \(op) \(x.shape) -> \(shape) \(x.dtype)"
        let primitive = PrimitiveCache.get(key) {
            var desc = dnnl_reduction_desc_t()
            var s = src, d = dst
            let alg: dnnl_alg_kind_t
            switch op {
            case .sum: alg = dnnl_reduction_sum
            case .mean: alg = dnnl_reduction_mean
            case .max: alg = dnnl_reduction_max
            case .min: alg = dnnl_reduction_min
            }
            OneDNN.check(dnnl_reduction_desc_init(&desc, alg, &s, &d, 0, 0), "describing \(key)")
            return PrimitiveCache.descriptor(&desc, "creating \(key)")
        }
        let out = Tensor(uninitializedShape: shape, dtype: x.dtype)
        OneDNN.execute(primitive.primitive, [(Arg.src, src, x.raw), (Arg.dst, dst, out.raw)])
        return out
    }

    /// `full` as [O, R, I] around the one contiguous run of axes where `kept` (the same rank) has 1 and `full` does
    /// not (leading axes: O = 1; trailing: I = 1; tokens of [B, N, D]: B, N, D); nil when the axes differ in more
    /// than one run.
    private func middleRun(_ full: [Int], _ kept: [Int]) -> (outer: Int, run: Int, inner: Int)? {
        let differing = full.indices.filter { full[$0] != kept[$0] }
        guard let first = differing.first, let last = differing.last, kept[first...last].allSatisfy({ $0 == 1 }) else {
            return nil
        }
        return (full[..<first].reduce(1, *), full[first...last].reduce(1, *), full[(last + 1)...].reduce(1, *))
    }

    /// Sums over one run of axes (bias gradients and broadcast adjoints: leading; rows: trailing; average pooling
    /// over tokens: middle) as a product with ones: oneDNN's reduction has only a reference kernel for these
    /// layouts, many times slower than its matmul.
    private func sumAsMatmul(_ x: Tensor, to shape: [Int], mean: Bool) -> Tensor? {
        guard let (outer, run, inner) = middleRun(x.shape, shape) else { return nil }
        let one = mean ? 1 / Float(run) : 1
        let product: Tensor
        if outer == 1 {
            product = matmul(Tensor.full([1, run], one, dtype: x.dtype), x.rawView([run, inner]))  // [1, I]
        } else if inner == 1 {
            product = matmul(x.rawView([outer, run]), Tensor.full([run, 1], one, dtype: x.dtype))  // [O, 1]
        } else {
            product = matmul(Tensor.full([1, 1, run], one, dtype: x.dtype), x.rawView([outer, run, inner]))  // [O, 1, I]
        }
        return product.rawView(shape)
    }

    public func expand(_ x: Tensor, to shape: [Int], scale: Float) -> Tensor {
        precondition(shape.count == x.rank, "expand keeps the rank: \(x.shape) -> \(shape)")
        if widensBFloat16(x) { return expand(x.converted(to: .float32), to: shape, scale: scale).converted(to: x.dtype) }
        // One run of axes: an outer product with a column of `scale`s (oneDNN's binary broadcasts a middle run with
        // its loop reference: 48-148 ms for a ResNet's pooled gradient [128, 32, 1, 1, 8] -> [128, 32, 4, 4, 8]).
        if let (outer, run, inner) = middleRun(shape, x.shape) {
            let product: Tensor
            if outer == 1 {
                product = matmul(Tensor.full([run, 1], scale, dtype: x.dtype), x.rawView([1, inner]))  // [R, I]
            } else if inner == 1 {
                product = matmul(x.rawView([outer, 1]), Tensor.full([1, run], scale, dtype: x.dtype))  // [O, R]
            } else {
                product = matmul(Tensor.full([1, run, 1], scale, dtype: x.dtype), x.rawView([outer, 1, inner]))  // [O, R, I]
            }
            return product.rawView(shape)
        }
        let out = binary(.add, Tensor.zeros(shape, dtype: x.dtype), x)
        return scale == 1 ? out : unary(.affine(scale: scale, shift: 0), out)
    }

    /// a · b, plain.
    private func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
        matmul(a, b, transposeA: false, transposeB: false, bias: nil, activation: nil)
    }

    public func argmax(_ x: Tensor, axis: Int) -> [Int] {
        let (outer, n, inner) = x.split(at: axis)
        precondition(n > 0, "argmax over an empty axis")
        var result = [Int](repeating: 0, count: outer * inner)
        let values = x.dtype == .float32 ? x : x.converted(to: .float32)  // kept alive while `p` is read
        defer { withExtendedLifetime(values) {} }
        let p = values.pointer
        for o in 0..<outer {
            for i in 0..<inner {
                var best = 0
                var bestValue = p[o * n * inner + i]
                for j in 1..<n {
                    let v = p[(o * n + j) * inner + i]
                    if v > bestValue || (bestValue.isNaN && !v.isNaN) { best = j; bestValue = v }
                }
                result[o * inner + i] = best
            }
        }
        return result
    }

    // MARK: - Layout

    /// Copies `src` (any strides, through its descriptor) into `dst` with a oneDNN reorder.
    /// Also converts between dtypes when they differ.
    private func reorder(
        _ srcDims: [Int], srcStrides: [Int], from src: UnsafeMutableRawPointer,
        dstStrides: [Int], to dst: UnsafeMutableRawPointer, dtype: DType, outputDType: DType? = nil
    ) {
        let s = OneDNN.memoryDesc(srcDims, strides: srcStrides, dtype: dtype)
        let d = OneDNN.memoryDesc(srcDims, strides: dstStrides, dtype: outputDType ?? dtype)
        let key = "reorder \(srcDims) \(srcStrides) -> \(dstStrides) \(dtype) -> \(outputDType ?? dtype)"
        let primitive = PrimitiveCache.get(key) {
            var pd: dnnl_primitive_desc_t?
            var s = s, d = d
            OneDNN.check(
                dnnl_reorder_primitive_desc_create(&pd, &s, OneDNN.engine, &d, OneDNN.engine, nil),
                "creating \(key)")
            return pd!
        }
        OneDNN.execute(primitive.primitive, [(Arg.src, s, src), (Arg.dst, d, dst)])
    }

    public func permute(_ x: Tensor, _ axes: [Int]) -> Tensor {
        precondition(axes.sorted() == Array(0..<x.rank), "permutation \(axes) does not fit rank \(x.rank)")
        if widensBFloat16(x) { return permute(x.converted(to: .float32), axes).converted(to: x.dtype) }
        let outShape = axes.map { x.shape[$0] }
        let out = Tensor(uninitializedShape: outShape, dtype: x.dtype)
        if x.count == 0 { return out }
        let inStrides = Shape.contiguousStrides(x.shape)
        reorder(
            outShape, srcStrides: axes.map { inStrides[$0] }, from: x.raw,
            dstStrides: Shape.contiguousStrides(outShape), to: out.raw, dtype: x.dtype)
        return out
    }

    public func concat(_ xs: [Tensor], axis: Int) -> Tensor {
        precondition(!xs.isEmpty, "concat of nothing")
        if widensBFloat16(xs[0]) { return concat(xs.map { $0.converted(to: .float32) }, axis: axis).converted(to: xs[0].dtype) }
        var outShape = xs[0].shape
        outShape[axis] = xs.reduce(0) { $0 + $1.shape[axis] }
        let dtype = xs[0].dtype
        precondition(xs.allSatisfy { $0.dtype == dtype }, "concat of tensors of different dtypes")
        let out = Tensor(uninitializedShape: outShape, dtype: dtype)
        let outStrides = Shape.contiguousStrides(outShape)
        // Each part is a strided copy into its place: one reorder per part, no concat primitive per part count.
        var start = 0
        for x in xs where x.count > 0 {
            reorder(
                x.shape, srcStrides: Shape.contiguousStrides(x.shape), from: x.raw,
                dstStrides: outStrides, to: out.raw + start * outStrides[axis] * dtype.byteSize, dtype: dtype)
            start += x.shape[axis]
        }
        return out
    }

    public func slice(_ x: Tensor, axis: Int, start: Int, length: Int) -> Tensor {
        if widensBFloat16(x) { return slice(x.converted(to: .float32), axis: axis, start: start, length: length).converted(to: x.dtype) }
        var outShape = x.shape
        outShape[axis] = length
        let out = Tensor(uninitializedShape: outShape, dtype: x.dtype)
        if out.count == 0 { return out }
        let inStrides = Shape.contiguousStrides(x.shape)
        reorder(
            outShape, srcStrides: inStrides, from: x.raw + start * inStrides[axis] * x.dtype.byteSize,
            dstStrides: Shape.contiguousStrides(outShape), to: out.raw, dtype: x.dtype)
        return out
    }

    public func unslice(_ x: Tensor, shape: [Int], axis: Int, start: Int) -> Tensor {
        if widensBFloat16(x) { return unslice(x.converted(to: .float32), shape: shape, axis: axis, start: start).converted(to: x.dtype) }
        let out = Tensor.zeros(shape, dtype: x.dtype)
        if x.count == 0 { return out }
        let outStrides = Shape.contiguousStrides(shape)
        reorder(
            x.shape, srcStrides: Shape.contiguousStrides(x.shape), from: x.raw,
            dstStrides: outStrides, to: out.raw + start * outStrides[axis] * x.dtype.byteSize, dtype: x.dtype)
        return out
    }

    public func gather(_ x: Tensor, axis: Int, indices: [[Int]]) -> Tensor {
        let (outer, n, inner) = x.split(at: axis)
        precondition(
            indices.count == outer || indices.count == 1,
            "gather on axis \(axis) of \(x.shape) needs 1 or \(outer) index lists, got \(indices.count)")
        let k = indices.first?.count ?? 0
        var outShape = x.shape
        outShape[axis] = k
        let out = Tensor(uninitializedShape: outShape, dtype: x.dtype)
        let src = x.raw, dst = out.raw, size = x.dtype.byteSize
        for o in 0..<outer {
            let list = indices[indices.count == 1 ? 0 : o]
            precondition(list.count == k, "gather index lists differ in length")
            for (j, index) in list.enumerated() {
                precondition(index >= 0 && index < n, "gather index \(index) out of range 0..<\(n)")
                (dst + (o * k + j) * inner * size).copyMemory(from: src + (o * n + index) * inner * size, byteCount: inner * size)
            }
        }
        return out
    }

    public func scatterAdd(_ x: Tensor, shape: [Int], axis: Int, indices: [[Int]]) -> Tensor {
        precondition(x.dtype == .float32, "scatterAdd sums float32 gradients, got \(x.dtype)")
        let out = Tensor.zeros(shape)
        let (outer, n, inner) = out.split(at: axis)
        let k = x.shape[axis]
        let src = x.pointer, dst = out.pointer
        for o in 0..<outer {
            let list = indices[indices.count == 1 ? 0 : o]
            for (j, index) in list.enumerated() {
                let from = src + (o * k + j) * inner, to = dst + (o * n + index) * inner
                for i in 0..<inner { to[i] += from[i] }
            }
        }
        return out
    }

    // MARK: - In place

    public func cast(_ source: Tensor, into destination: Tensor) {
        destination.thaw()
        precondition(source.count == destination.count, "cast of \(source.count) values into \(destination.count)")
        if source.count == 0 { return }
        if !OneDNN.computesBFloat16 && source.dtype != destination.dtype {
            // Without AVX-512 oneDNN converts with its scalar reference reorder (27 ms for 64 x 65 x 192 values);
            // these loops take the compiler's vector code.
            let n = source.count
            if source.dtype == .float32 {
                let from = source.pointer, to = destination.raw.assumingMemoryBound(to: UInt16.self)
                for i in 0..<n { to[i] = BFloat16.bits(from[i]) }
            } else {
                let from = source.raw.assumingMemoryBound(to: UInt16.self), to = destination.pointer
                for i in 0..<n { to[i] = BFloat16.float(from[i]) }
            }
            return
        }
        reorder(
            [source.count], srcStrides: [1], from: source.raw, dstStrides: [1], to: destination.raw, dtype: source.dtype,
            outputDType: destination.dtype)
    }

    public func fill(_ x: Tensor, _ value: Float) {
        x.thaw()
        switch x.dtype {
        case .float32: x.pointer.update(repeating: value, count: x.count)
        case .bfloat16: x.raw.assumingMemoryBound(to: UInt16.self).update(repeating: BFloat16.bits(value), count: x.count)
        }
    }

    // The updates are single passes over contiguous float32 memory that the compiler vectorises; oneDNN has no
    // primitive for them, and each reads and writes every element once, so there is nothing to fuse.

    public func adamUpdate(_ parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor, _ u: AdamUpdate) {
        parameter.thaw()
        precondition(
            [parameter, gradient, firstMoment, secondMoment].allSatisfy { $0.dtype == .float32 && $0.count == parameter.count },
            "Adam updates float32 parameters, gradients and moments of one size")
        let w = parameter.pointer, g = gradient.pointer, m = firstMoment.pointer, v = secondMoment.pointer
        for i in 0..<parameter.count {
            let gi = g[i] + u.l2 * w[i]
            m[i] = u.beta1 * m[i] + (1 - u.beta1) * gi
            v[i] = u.beta2 * v[i] + (1 - u.beta2) * gi * gi
            w[i] = w[i] * u.decay - u.stepSize * m[i] / (v[i].squareRoot() / u.correction2Root + u.eps)
        }
    }

    public func sgdUpdate(_ parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, _ u: SGDUpdate) {
        parameter.thaw()
        let tensors = [parameter, gradient] + (momentumBuffer.map { [$0] } ?? [])
        precondition(
            tensors.allSatisfy { $0.dtype == .float32 && $0.count == parameter.count },
            "SGD updates float32 parameters, gradients and buffers of one size")
        let w = parameter.pointer, g = gradient.pointer
        let buf = u.momentum != 0 ? momentumBuffer?.pointer : nil
        for i in 0..<parameter.count {
            var d = g[i] + u.weightDecay * w[i]
            if let buf {
                buf[i] = u.firstStep ? d : u.momentum * buf[i] + d
                d = u.nesterov ? d + u.momentum * buf[i] : buf[i]
            }
            w[i] -= u.learningRate * d
        }
    }

    public func lerp(_ average: Tensor, toward x: Tensor, decay: Float) {
        average.thaw()
        // A loop, not oneDNN's sum primitive: the sum's scales are fixed when the primitive is made, and the EMA's
        // decay changes every step during its warm-up, which would make a primitive per step.
        precondition(
            average.dtype == .float32 && x.dtype == .float32 && average.count == x.count,
            "an average of float32 values toward as many float32 values")
        let a = average.pointer, p = x.pointer
        for i in 0..<x.count { a[i] = decay * a[i] + (1 - decay) * p[i] }
    }

    public func sumOfSquares(_ x: Tensor) -> Double {
        let values = x.dtype == .float32 ? x : x.converted(to: .float32)
        defer { withExtendedLifetime(values) {} }  // `p` points into it
        let p = values.pointer
        var total = 0.0
        // Float partial sums over blocks of 4096 (vectorised), added up in double.
        for start in stride(from: 0, to: values.count, by: 4096) {
            var chunk: Float = 0
            for i in start..<Swift.min(start + 4096, values.count) { chunk += p[i] * p[i] }
            total += Double(chunk)
        }
        return total
    }
}

extension Tensor {
    /// Another shape over the same data, outside the graph (for kernels).
    func rawView(_ shape: [Int]) -> Tensor { Tensor(shape: shape, storage: storage, offset: offset) }

    /// (product of axes before `axis`, size of `axis`, product of axes after it).
    func split(at axis: Int) -> (outer: Int, size: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    /// A copy in `dtype`, outside the graph.
    public func converted(to dtype: DType) -> Tensor {
        let out = Tensor(uninitializedShape: shape, dtype: dtype, device: device)
        device.backend.cast(self, into: out)
        return out
    }
}
