import CDNNL
import Foundation

/// The CPU backend: every kernel is a cached oneDNN primitive, except the index shuffles (argmax, gather, scatter)
/// which are row copies in Swift.
public final class CPUBackend: Backend {
    public static let shared = CPUBackend()

    // MARK: - Matmul

    public func matmul(
        _ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?,
        activation: UnaryOp?
    ) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs rank >= 2 operands, got \(a.shape) and \(b.shape)")
        // A 2-D right operand (a weight) against a batched left one: fold the batch into M, one big product.
        if b.rank == 2 && a.rank > 2 && !transposeA {
            let lead = Array(a.shape.dropLast())
            let out = matmul(
                a.rawView([lead.reduce(1, *), a.shape[a.rank - 1]]), b, transposeA: false,
                transposeB: transposeB, bias: bias, activation: activation)
            return out.rawView(lead + [out.shape[1]])
        }
        if transposeA && a.rank == 2 && b.rank == 2 && bias == nil && activation == nil {
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

        let aDesc = OneDNN.memoryDesc(aDims, strides: aStrides)
        let bDesc = OneDNN.memoryDesc(bDims, strides: bStrides)
        let biasDesc = OneDNN.memoryDesc([Int](repeating: 1, count: rank - 1) + [n])
        let outDesc = OneDNN.memoryDesc(outDims)
        let key = "matmul \(aDims) \(aStrides) \(bDims) \(bStrides) bias:\(bias != nil) act:\(String(describing: activation))"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_matmul_desc_t()
            var aDesc = aDesc, bDesc = bDesc, biasDesc = biasDesc, outDesc = outDesc
            let status =
                bias != nil
                ? dnnl_matmul_desc_init(&op, &aDesc, &bDesc, &biasDesc, &outDesc)
                : dnnl_matmul_desc_init(&op, &aDesc, &bDesc, nil, &outDesc)
            OneDNN.check(status, "describing matmul \(key)")
            return withAttributes(postOp: activation) { attributes in
                PrimitiveCache.descriptor(&op, attributes: attributes, "creating matmul \(key)")
            }
        }
        let out = Tensor(uninitializedShape: outDims)
        var args = [(Arg.src, aDesc, a.raw), (Arg.weights, bDesc, b.raw), (Arg.dst, outDesc, out.raw)]
        if let bias { args.append((Arg.bias, biasDesc, bias.raw)) }
        OneDNN.execute(primitive.primitive, args)
        return out
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

    // MARK: - Elementwise

    public func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
        let outShape = Shape.broadcast(a.shape, b.shape)
        var (a, b) = (a, b)
        // oneDNN broadcasts only the second source: swap when the op allows, else expand the first.
        if a.shape != outShape {
            if b.shape == outShape && [.add, .mul, .max, .min].contains(op) {
                swap(&a, &b)
            } else {
                let expanded = Tensor.zeros(outShape)
                binary(.add, expanded, a, into: expanded)
                a = expanded
            }
        }
        let out = Tensor(uninitializedShape: outShape)
        binary(op, a, b, into: out)
        return out
    }

    /// out = a (op) b where a and out have the same shape and b broadcasts to it; `out` may be `a`.
    func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, into out: Tensor) {
        let rank = max(out.rank, 1)
        let outDims = Shape.padded(out.shape, to: rank)
        let bDims = Shape.padded(b.shape, to: rank)
        let outDesc = OneDNN.memoryDesc(outDims)
        let bDesc = OneDNN.memoryDesc(bDims)
        let key = "binary \(op) \(outDims) \(bDims)"
        let primitive = PrimitiveCache.get(key) {
            var desc = dnnl_binary_desc_t()
            var aDesc = outDesc, bDesc = bDesc, dDesc = outDesc
            OneDNN.check(dnnl_binary_desc_init(&desc, binaryAlgorithm(op), &aDesc, &bDesc, &dDesc), "describing \(key)")
            return PrimitiveCache.descriptor(&desc, "creating \(key)")
        }
        OneDNN.execute(
            primitive.primitive,
            [
                (Arg.src, outDesc, a.raw), (Arg.src1, bDesc, b.raw),
                (Arg.dst, outDesc, out.raw)
            ])
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

    private func eltwiseAlgorithm(_ op: UnaryOp) -> (dnnl_alg_kind_t, Float, Float) {
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
    private func eltwiseForward(_ op: UnaryOp, count: Int) -> (CachedPrimitive, dnnl_memory_desc_t) {
        let desc = OneDNN.memoryDesc([max(count, 1)])
        let key = "eltwise \(op) \(count)"
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
        let out = Tensor(uninitializedShape: x.shape)
        if x.count == 0 { return out }
        let (primitive, desc) = eltwiseForward(op, count: x.count)
        OneDNN.execute(primitive.primitive, [(Arg.src, desc, x.raw), (Arg.dst, desc, out.raw)])
        return out
    }

    public func unaryBackward(_ op: UnaryOp, gradOutput: Tensor, input: Tensor) -> Tensor {
        let out = Tensor(uninitializedShape: input.shape)
        if input.count == 0 { return out }
        let (forward, desc) = eltwiseForward(op, count: input.count)
        let key = "eltwise backward \(op) \(input.count)"
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

    private func softmaxForward(rows: Int, columns: Int, log: Bool) -> (CachedPrimitive, dnnl_memory_desc_t) {
        let desc = OneDNN.memoryDesc([rows, columns])
        let key = "softmax log:\(log) \(rows)x\(columns)"
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
        let columns = x.shape[x.rank - 1], rows = x.count / max(columns, 1)
        let out = Tensor(uninitializedShape: x.shape)
        if x.count == 0 { return out }
        let (primitive, desc) = softmaxForward(rows: rows, columns: columns, log: log)
        OneDNN.execute(primitive.primitive, [(Arg.src, desc, x.raw), (Arg.dst, desc, out.raw)])
        return out
    }

    public func softmaxBackward(gradOutput: Tensor, output: Tensor, log: Bool) -> Tensor {
        let columns = output.shape[output.rank - 1], rows = output.count / max(columns, 1)
        let out = Tensor(uninitializedShape: output.shape)
        if output.count == 0 { return out }
        let (forward, desc) = softmaxForward(rows: rows, columns: columns, log: log)
        let key = "softmax backward log:\(log) \(rows)x\(columns)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_softmax_v2_desc_t()
            var ds = desc, dd = desc, d = desc
            OneDNN.check(
                dnnl_softmax_v2_backward_desc_init(
                    &op, log ? dnnl_softmax_log : dnnl_softmax_accurate,
                    &ds, &dd, &d, 1), "describing \(key)")
            return PrimitiveCache.descriptor(&op, hint: forward.descriptor, "creating \(key)")
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

    private func layerNormForward(rows: Int, columns: Int, eps: Float, flags: UInt32)
        -> (CachedPrimitive, dnnl_memory_desc_t, dnnl_memory_desc_t)
    {
        let data = OneDNN.memoryDesc([rows, columns])
        let stats = OneDNN.memoryDesc([rows])
        let key = "layernorm \(rows)x\(columns) eps:\(eps) flags:\(flags)"
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
        let columns = x.shape[x.rank - 1], rows = x.count / columns
        let flags = layerNormFlags(weight: weight, bias: bias)
        let (primitive, data, stats) = layerNormForward(rows: rows, columns: columns, eps: eps, flags: flags)
        let out = Tensor(uninitializedShape: x.shape)
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
        let (forward, data, stats) = layerNormForward(rows: rows, columns: columns, eps: eps, flags: flags)
        let key = "layernorm backward \(rows)x\(columns) eps:\(eps) flags:\(flags)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_layer_normalization_desc_t()
            var dd = data, d = data, s = stats
            OneDNN.check(
                dnnl_layer_normalization_backward_desc_init(
                    &op, flags != 0 ? dnnl_backward : dnnl_backward_data, &dd, &d, &s, eps, flags), "describing \(key)")
            return PrimitiveCache.descriptor(&op, hint: forward.descriptor, "creating \(key)")
        }
        let gradInput = Tensor(uninitializedShape: input.shape)
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
        if op == .sum || op == .mean, let sum = sumAsMatmul(x, to: shape, mean: op == .mean) { return sum }
        let src = OneDNN.memoryDesc(x.shape), dst = OneDNN.memoryDesc(shape)
        let key = "reduce \(op) \(x.shape) -> \(shape)"
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
        let out = Tensor(uninitializedShape: shape)
        OneDNN.execute(primitive.primitive, [(Arg.src, src, x.raw), (Arg.dst, dst, out.raw)])
        return out
    }

    /// Sums over leading axes (bias gradients, broadcast adjoints) or trailing axes as a product with a vector of
    /// ones: oneDNN's reduction has only a reference kernel for these layouts, many times slower than its matmul.
    private func sumAsMatmul(_ x: Tensor, to shape: [Int], mean: Bool) -> Tensor? {
        // Leading axes reduced: shape = [1, ..., 1, kept...] with the kept axes equal to x's.
        let firstKept = shape.firstIndex { $0 != 1 } ?? shape.count
        if firstKept > 0 && Array(shape[firstKept...]) == Array(x.shape[firstKept...]) {
            let columns = shape[firstKept...].reduce(1, *), rows = x.count / max(columns, 1)
            let ones = Tensor.full([1, rows], mean ? 1 / Float(rows) : 1)  // [1, R]
            return matmul(
                ones, x.rawView([rows, columns]), transposeA: false, transposeB: false, bias: nil,
                activation: nil
            ).rawView(shape)  // [1, C]
        }
        // Trailing axes reduced: shape = [kept..., 1, ..., 1].
        let endKept = (shape.lastIndex { $0 != 1 } ?? -1) + 1
        if endKept < shape.count && Array(shape[..<endKept]) == Array(x.shape[..<endKept]) {
            let rows = shape[..<endKept].reduce(1, *), columns = x.count / max(rows, 1)
            let ones = Tensor.full([columns, 1], mean ? 1 / Float(columns) : 1)  // [C, 1]
            return matmul(
                x.rawView([rows, columns]), ones, transposeA: false, transposeB: false, bias: nil,
                activation: nil
            ).rawView(shape)  // [R, 1]
        }
        return nil
    }

    public func argmax(_ x: Tensor, axis: Int) -> [Int] {
        let (outer, n, inner) = x.split(at: axis)
        precondition(n > 0, "argmax over an empty axis")
        var result = [Int](repeating: 0, count: outer * inner)
        let p = x.pointer
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
    private func reorder(
        _ srcDims: [Int], srcStrides: [Int], from src: UnsafeMutableRawPointer,
        dstStrides: [Int], to dst: UnsafeMutableRawPointer
    ) {
        let s = OneDNN.memoryDesc(srcDims, strides: srcStrides)
        let d = OneDNN.memoryDesc(srcDims, strides: dstStrides)
        let key = "reorder \(srcDims) \(srcStrides) -> \(dstStrides)"
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
        let outShape = axes.map { x.shape[$0] }
        let out = Tensor(uninitializedShape: outShape)
        if x.count == 0 { return out }
        let inStrides = Shape.contiguousStrides(x.shape)
        reorder(
            outShape, srcStrides: axes.map { inStrides[$0] }, from: x.raw,
            dstStrides: Shape.contiguousStrides(outShape), to: out.raw)
        return out
    }

    public func concat(_ xs: [Tensor], axis: Int) -> Tensor {
        precondition(!xs.isEmpty, "concat of nothing")
        var outShape = xs[0].shape
        outShape[axis] = xs.reduce(0) { $0 + $1.shape[axis] }
        let out = Tensor(uninitializedShape: outShape)
        let outStrides = Shape.contiguousStrides(outShape)
        // Each part is a strided copy into its place: one reorder per part, no concat primitive per part count.
        var start = 0
        for x in xs where x.count > 0 {
            reorder(
                x.shape, srcStrides: Shape.contiguousStrides(x.shape), from: x.raw,
                dstStrides: outStrides, to: UnsafeMutableRawPointer(out.pointer + start * outStrides[axis]))
            start += x.shape[axis]
        }
        return out
    }

    public func slice(_ x: Tensor, axis: Int, start: Int, length: Int) -> Tensor {
        var outShape = x.shape
        outShape[axis] = length
        let out = Tensor(uninitializedShape: outShape)
        if out.count == 0 { return out }
        let inStrides = Shape.contiguousStrides(x.shape)
        reorder(
            outShape, srcStrides: inStrides, from: UnsafeMutableRawPointer(x.pointer + start * inStrides[axis]),
            dstStrides: Shape.contiguousStrides(outShape), to: out.raw)
        return out
    }

    public func unslice(_ x: Tensor, shape: [Int], axis: Int, start: Int) -> Tensor {
        let out = Tensor.zeros(shape)
        if x.count == 0 { return out }
        let outStrides = Shape.contiguousStrides(shape)
        reorder(
            x.shape, srcStrides: Shape.contiguousStrides(x.shape), from: x.raw,
            dstStrides: outStrides, to: UnsafeMutableRawPointer(out.pointer + start * outStrides[axis]))
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
        let out = Tensor(uninitializedShape: outShape)
        let src = x.pointer, dst = out.pointer
        for o in 0..<outer {
            let list = indices[indices.count == 1 ? 0 : o]
            precondition(list.count == k, "gather index lists differ in length")
            for (j, index) in list.enumerated() {
                precondition(index >= 0 && index < n, "gather index \(index) out of range 0..<\(n)")
                (dst + (o * k + j) * inner).update(from: src + (o * n + index) * inner, count: inner)
            }
        }
        return out
    }

    public func scatterAdd(_ x: Tensor, shape: [Int], axis: Int, indices: [[Int]]) -> Tensor {
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
}

extension Tensor {
    /// The data pointer as oneDNN takes it.
    var raw: UnsafeMutableRawPointer { UnsafeMutableRawPointer(pointer) }

    /// Another shape over the same data, outside the graph (for kernels).
    func rawView(_ shape: [Int]) -> Tensor { Tensor(shape: shape, storage: storage, offset: offset) }

    /// (product of axes before `axis`, size of `axis`, product of axes after it).
    func split(at axis: Int) -> (outer: Int, size: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }
}
