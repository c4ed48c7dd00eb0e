import CDNNL
import Foundation

/// Convolution, pooling and batch normalisation on oneDNN, in float32, on images channels-first (nchw) as timm keeps
/// tensors, or channel-blocked ([B, C / b, H, W, b]: nChw8c, nChw16c), the layout oneDNN's direct convolution kernels
/// run on (`jit:avx2` here instead of the gemm-based kernels it picks for nchw: ResNet-18 training 1.8x faster, see
/// the README's "CNNs and hybrids"). A blocked convolution reads its weight in the layout its kernel chose.
extension CPUBackend {
    private func dims(_ values: [Int]) -> [dnnl_dim_t] { values.map { dnnl_dim_t($0) } }

    /// A pointer to `desc`, or nil without one (an absent bias).
    private func withOptional<T>(_ desc: dnnl_memory_desc_t?, _ body: (UnsafePointer<dnnl_memory_desc_t>?) -> T) -> T {
        guard var desc else { return body(nil) }
        return withUnsafePointer(to: &desc) { body($0) }
    }

    /// The weight as oneDNN takes it: [Cout, Cin/g, kH, kW], or [g, Cout/g, Cin/g, kH, kW] with groups (same memory).
    private func weightDims(_ weight: [Int], groups: Int) -> [Int] {
        groups == 1 ? weight : [groups, weight[0] / groups] + weight.dropFirst()
    }

    /// The block oneDNN's convolution picks for its activations when left free, asked once of a ResNet-like
    /// 3x3 convolution (64 -> 64 channels, 32 x 32): 8 with AVX2, 16 with AVX-512, 1 where it keeps nchw.
    public var preferredChannelBlock: Int { Self.channelBlock }

    private static let channelBlock: Int = {
        var src = OneDNN.anyLayoutDesc([32, 64, 32, 32], dtype: .float32), dst = src
        var weights = OneDNN.anyLayoutDesc([64, 64, 3, 3], dtype: .float32)
        let one: [dnnl_dim_t] = [1, 1], zero: [dnnl_dim_t] = [0, 0]
        var op = dnnl_convolution_desc_t()
        OneDNN.check(
            dnnl_dilated_convolution_forward_desc_init(
                &op, dnnl_forward_training, dnnl_convolution_direct, &src, &weights, nil, &dst, one, zero, one, one),
            "describing the layout probe")
        guard let pd = PrimitiveCache.descriptorIfImplemented(&op, "creating the layout probe") else { return 1 }
        defer { dnnl_primitive_desc_destroy(pd) }
        let block = OneDNN.channelBlock(of: dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0)!.pointee)
        return [8, 16].contains(block) ? block : 1
    }()

    private struct ConvolutionDescs {
        /// src and dst in the tensors' layout; `weights` is `plainWeights` for channels-first images and left to the
        /// primitive (format any) for channel-blocked ones, whose fast kernels want their own weight layout.
        var src, weights, plainWeights, bias, dst: dnnl_memory_desc_t
        var strides, dilates, padBefore, padAfter: [dnnl_dim_t]
        /// The output's shape as stored: [B, Cout, H', W'] or [B, Cout / b, H', W', b].
        var outputShape: [Int]
        var blocked: Bool
    }

    private func convolutionDescs(input: [Int], weight: [Int], hasBias: Bool, _ g: WindowGeometry) -> ConvolutionDescs {
        let block = input.count == 5 ? input[4] : 1
        let out = g.outputSize([input[2], input[3]])
        precondition(weight[0] % block == 0, "a channel-blocked convolution needs output channels in blocks of \(block), not \(weight[0])")
        let outputShape = block > 1 ? [input[0], weight[0] / block] + out + [block] : [input[0], weight[0]] + out
        let plainWeights = OneDNN.memoryDesc(weightDims(weight, groups: g.groups))
        return ConvolutionDescs(
            src: OneDNN.imageDesc(input),
            weights: block > 1 ? OneDNN.anyLayoutDesc(weightDims(weight, groups: g.groups), dtype: .float32) : plainWeights,
            plainWeights: plainWeights, bias: OneDNN.memoryDesc([weight[0]]), dst: OneDNN.imageDesc(outputShape),
            strides: dims(g.stride), dilates: dims(g.dilation.map { $0 - 1 }),  // oneDNN counts dilation from 0
            padBefore: dims(g.paddingBefore), padAfter: dims(g.paddingAfter), outputShape: outputShape, blocked: block > 1)
    }

    private func convolutionForward(input: [Int], weight: [Int], hasBias: Bool, _ g: WindowGeometry) -> (CachedPrimitive, ConvolutionDescs)
    {
        var d = convolutionDescs(input: input, weight: weight, hasBias: hasBias, g)
        let key = "conv \(input) \(weight) bias:\(hasBias) \(g)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_convolution_desc_t()
            withOptional(hasBias ? d.bias : nil) { bias in
                OneDNN.check(
                    dnnl_dilated_convolution_forward_desc_init(
                        &op, dnnl_forward_training, dnnl_convolution_direct, &d.src, &d.weights, bias, &d.dst, d.strides, d.dilates,
                        d.padBefore, d.padAfter), "describing \(key)")
            }
            return PrimitiveCache.descriptorWithOwnScratchpad(&op, "creating \(key)")
        }
        return (primitive, d)
    }

    /// The weight as `primitive` reads it: the tensor itself where the layout is plain; else a copy in the
    /// primitive's layout, made once for a frozen weight (kept with it, in place of its plain memory, as a matmul's
    /// is) and at each call for a trained one.
    private func weights(_ weight: Tensor, for primitive: CachedPrimitive, _ d: ConvolutionDescs, key: String)
        -> (desc: dnnl_memory_desc_t, pointer: UnsafeMutableRawPointer, owner: PackedWeights?)
    {
        guard d.blocked else { return (d.plainWeights, weight.raw, nil) }
        let chosen = dnnl_primitive_desc_query_md(primitive.descriptor, dnnl_query_weights_md, 0)!.pointee
        if weight.isFrozenForInference {
            let packed = weight.packedCopies[key] ?? packFrozenWeight(weight, plain: d.plainWeights, packed: chosen, key: key)
            weight.packedCopies[key] = packed
            return (packed.desc, packed.pointer, packed)
        }
        let packed = PackedWeights(weight.raw, plain: d.plainWeights, packed: chosen, key: key)
        return (packed.desc, packed.pointer, packed)
    }

    public func convolution(_ x: Tensor, weight: Tensor, bias: Tensor?, _ g: WindowGeometry) -> Tensor {
        precondition(x.dtype == .float32 && weight.dtype == .float32, "convolutions run in float32")
        let (primitive, d) = convolutionForward(input: x.shape, weight: weight.shape, hasBias: bias != nil, g)
        let w = weights(weight, for: primitive, d, key: "conv \(x.shape) \(weight.shape) \(g)")
        let out = Tensor(uninitializedShape: d.outputShape)
        var args = [(Arg.src, d.src, x.raw), (Arg.weights, w.desc, w.pointer), (Arg.dst, d.dst, out.raw)]
        if let bias { args.append((Arg.bias, d.bias, bias.raw)) }
        withExtendedLifetime(w.owner) { OneDNN.execute(primitive.primitive, args) }
        return out
    }

    public func convolutionBackward(
        gradOutput: Tensor, input: Tensor, weight: Tensor, _ g: WindowGeometry, inputGradient: Bool, biasGradient: Bool
    ) -> (input: Tensor?, weight: Tensor, bias: Tensor?) {
        let (forward, descs) = convolutionForward(input: input.shape, weight: weight.shape, hasBias: biasGradient, g)
        precondition(gradOutput.shape == descs.outputShape, "convolution gradient \(gradOutput.shape), output \(descs.outputShape)")
        var d = descs
        var gradInput: Tensor?
        if inputGradient {
            let key = "conv backward data \(input.shape) \(weight.shape) \(g)"
            let primitive = PrimitiveCache.get(key) {
                var op = dnnl_convolution_desc_t()
                OneDNN.check(
                    dnnl_dilated_convolution_backward_data_desc_init(
                        &op, dnnl_convolution_direct, &d.src, &d.weights, &d.dst, d.strides, d.dilates, d.padBefore, d.padAfter),
                    "describing \(key)")
                return PrimitiveCache.descriptorWithOwnScratchpad(&op, hint: forward.descriptor, "creating \(key)")
            }
            let w = weights(weight, for: primitive, d, key: key)
            let out = Tensor(uninitializedShape: input.shape)
            withExtendedLifetime(w.owner) {
                OneDNN.execute(
                    primitive.primitive,
                    [(Arg.diffDst, d.dst, gradOutput.raw), (Arg.weights, w.desc, w.pointer), (Arg.diffSrc, d.src, out.raw)])
            }
            gradInput = out
        }
        let key = "conv backward weights \(input.shape) \(weight.shape) bias:\(biasGradient) \(g)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_convolution_desc_t()
            withOptional(biasGradient ? d.bias : nil) { bias in
                OneDNN.check(
                    dnnl_dilated_convolution_backward_weights_desc_init(
                        &op, dnnl_convolution_direct, &d.src, &d.weights, bias, &d.dst, d.strides, d.dilates, d.padBefore, d.padAfter),
                    "describing \(key)")
            }
            return PrimitiveCache.descriptorWithOwnScratchpad(&op, hint: forward.descriptor, "creating \(key)")
        }
        let gradWeight = Tensor(uninitializedShape: weight.shape)
        let gradBias = biasGradient ? Tensor(uninitializedShape: [weight.shape[0]]) : nil
        // Channel-blocked kernels write the weight gradient in their own layout; it is reordered into the plain tensor.
        let blockedGradient =
            d.blocked ? PackedWeights(dnnl_primitive_desc_query_md(primitive.descriptor, dnnl_query_diff_weights_md, 0)!.pointee) : nil
        var args = [
            (Arg.src, d.src, input.raw), (Arg.diffDst, d.dst, gradOutput.raw),
            (Arg.diffWeights, blockedGradient?.desc ?? d.plainWeights, blockedGradient?.pointer ?? gradWeight.raw)
        ]
        if let gradBias { args.append((Arg.diffBias, d.bias, gradBias.raw)) }
        OneDNN.execute(primitive.primitive, args)
        if let blockedGradient {
            OneDNN.reorder("unpacking " + key, from: blockedGradient.desc, blockedGradient.pointer, to: d.plainWeights, gradWeight.raw)
        }
        return (gradInput, gradWeight, gradBias)
    }

    // MARK: - Pooling

    private func poolingAlgorithm(_ kind: PoolingKind) -> dnnl_alg_kind_t {
        switch kind {
        case .max: return dnnl_pooling_max
        case .average: return dnnl_pooling_avg_include_padding
        case .averageExcludingPadding: return dnnl_pooling_avg_exclude_padding
        }
    }

    /// [B, C, H', W'] or, channel-blocked, [B, C / b, H', W', b].
    private func pooledShape(_ input: [Int], _ g: WindowGeometry) -> [Int] {
        Array(input[..<2]) + g.outputSize([input[2], input[3]]) + input.dropFirst(4)
    }

    private func poolingForward(_ input: [Int], _ kind: PoolingKind, _ g: WindowGeometry)
        -> (CachedPrimitive, dnnl_memory_desc_t, dnnl_memory_desc_t, dnnl_memory_desc_t?)
    {
        var src = OneDNN.imageDesc(input)
        var dst = OneDNN.imageDesc(pooledShape(input, g))
        let strides = dims(g.stride), kernel = dims(g.kernel), dilation = dims(g.dilation.map { $0 - 1 })
        let before = dims(g.paddingBefore), after = dims(g.paddingAfter)
        let key = "pool \(kind) \(input) \(g)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_pooling_v2_desc_t()
            OneDNN.check(
                dnnl_pooling_v2_forward_desc_init(
                    &op, dnnl_forward_training, poolingAlgorithm(kind), &src, &dst, strides, kernel, dilation, before, after),
                "describing \(key)")
            return PrimitiveCache.descriptorWithOwnScratchpad(&op, "creating \(key)")
        }
        let workspace = dnnl_primitive_desc_query_md(primitive.descriptor, dnnl_query_workspace_md, 0).pointee
        return (primitive, src, dst, dnnl_memory_desc_get_size([workspace]) > 0 ? workspace : nil)
    }

    public func pooling(_ x: Tensor, _ kind: PoolingKind, _ g: WindowGeometry) -> (output: Tensor, workspace: Tensor?) {
        precondition(x.dtype == .float32, "pooling runs in float32")
        let (primitive, src, dst, workspaceDesc) = poolingForward(x.shape, kind, g)
        let out = Tensor(uninitializedShape: pooledShape(x.shape, g))
        var args = [(Arg.src, src, x.raw), (Arg.dst, dst, out.raw)]
        var workspace: Tensor?
        if var desc = workspaceDesc {
            // Max pooling's choices, opaque bytes kept in a float32 tensor large enough to hold them.
            let bytes = dnnl_memory_desc_get_size(&desc)
            let holder = Tensor(uninitializedShape: [(bytes + 3) / 4])
            args.append((Arg.workspace, desc, holder.raw))
            workspace = holder
        }
        OneDNN.execute(primitive.primitive, args)
        return (out, workspace)
    }

    public func poolingBackward(gradOutput: Tensor, input: Tensor, workspace: Tensor?, _ kind: PoolingKind, _ g: WindowGeometry)
        -> Tensor
    {
        let (forward, src, dst, workspaceDesc) = poolingForward(input.shape, kind, g)
        var diffSrc = src, diffDst = dst
        let strides = dims(g.stride), kernel = dims(g.kernel), dilation = dims(g.dilation.map { $0 - 1 })
        let before = dims(g.paddingBefore), after = dims(g.paddingAfter)
        let key = "pool backward \(kind) \(input.shape) \(g)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_pooling_v2_desc_t()
            OneDNN.check(
                dnnl_pooling_v2_backward_desc_init(
                    &op, poolingAlgorithm(kind), &diffSrc, &diffDst, strides, kernel, dilation, before, after),
                "describing \(key)")
            return PrimitiveCache.descriptorWithOwnScratchpad(&op, hint: forward.descriptor, "creating \(key)")
        }
        let out = Tensor(uninitializedShape: input.shape)
        var args = [(Arg.diffDst, dst, gradOutput.raw), (Arg.diffSrc, src, out.raw)]
        if let workspaceDesc {
            guard let workspace else { preconditionFailure("max pooling's backward pass needs the forward pass's workspace") }
            args.append((Arg.workspace, workspaceDesc, workspace.raw))
        }
        OneDNN.execute(primitive.primitive, args)
        return out
    }

    // MARK: - Batch normalisation

    private func batchNormFlags(weight: Tensor?, bias: Tensor?, fixed: Bool) -> UInt32 {
        (weight != nil ? dnnl_use_scale.rawValue : 0) | (bias != nil ? dnnl_use_shift.rawValue : 0)
            | (fixed ? dnnl_use_global_stats.rawValue : 0)
    }

    private func batchNormForward(_ shape: [Int], eps: Float, flags: UInt32) -> (CachedPrimitive, dnnl_memory_desc_t) {
        var data = OneDNN.imageDesc(shape)
        let key = "batchnorm \(shape) eps:\(eps) flags:\(flags)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_batch_normalization_desc_t()
            OneDNN.check(dnnl_batch_normalization_forward_desc_init(&op, dnnl_forward_training, &data, eps, flags), "describing \(key)")
            return PrimitiveCache.descriptorWithOwnScratchpad(&op, "creating \(key)")
        }
        return (primitive, data)
    }

    public func batchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, statistics: (mean: Tensor, variance: Tensor)?, eps: Float)
        -> (output: Tensor, mean: Tensor, variance: Tensor)
    {
        precondition(x.dtype == .float32, "batch normalisation runs in float32")
        let channels = x.imageChannels
        let flags = batchNormFlags(weight: weight, bias: bias, fixed: statistics != nil)
        let (primitive, data) = batchNormForward(x.shape, eps: eps, flags: flags)
        let out = Tensor(uninitializedShape: x.shape)
        let mean = statistics?.mean ?? Tensor(uninitializedShape: [channels])
        let variance = statistics?.variance ?? Tensor(uninitializedShape: [channels])
        let vector = OneDNN.memoryDesc([channels])
        var args = [(Arg.src, data, x.raw), (Arg.dst, data, out.raw), (Arg.mean, vector, mean.raw), (Arg.variance, vector, variance.raw)]
        if let weight { args.append((Arg.scale, vector, weight.raw)) }
        if let bias { args.append((Arg.shift, vector, bias.raw)) }
        OneDNN.execute(primitive.primitive, args)
        return (out, mean, variance)
    }

    public func batchNormBackward(
        gradOutput: Tensor, input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, eps: Float,
        fixedStatistics: Bool
    ) -> (input: Tensor, weight: Tensor?, bias: Tensor?) {
        let channels = input.imageChannels
        let flags = batchNormFlags(weight: weight, bias: bias, fixed: fixedStatistics)
        let (forward, data) = batchNormForward(input.shape, eps: eps, flags: flags)
        let key = "batchnorm backward \(input.shape) eps:\(eps) flags:\(flags)"
        let primitive = PrimitiveCache.get(key) {
            var op = dnnl_batch_normalization_desc_t()
            var diff = data, d = data
            let kind = weight != nil || bias != nil ? dnnl_backward : dnnl_backward_data
            OneDNN.check(dnnl_batch_normalization_backward_desc_init(&op, kind, &diff, &d, eps, flags), "describing \(key)")
            return PrimitiveCache.descriptorWithOwnScratchpad(&op, hint: forward.descriptor, "creating \(key)")
        }
        let gradInput = Tensor(uninitializedShape: input.shape)
        let gradWeight = weight.map { _ in Tensor(uninitializedShape: [channels]) }
        let gradBias = bias.map { _ in Tensor(uninitializedShape: [channels]) }
        let vector = OneDNN.memoryDesc([channels])
        var args = [
            (Arg.src, data, input.raw), (Arg.mean, vector, mean.raw), (Arg.variance, vector, variance.raw),
            (Arg.diffDst, data, gradOutput.raw), (Arg.diffSrc, data, gradInput.raw)
        ]
        if let weight, let gradWeight { args += [(Arg.scale, vector, weight.raw), (Arg.diffScale, vector, gradWeight.raw)] }
        if let bias, let gradBias { args += [(Arg.shift, vector, bias.raw), (Arg.diffShift, vector, gradBias.raw)] }
        OneDNN.execute(primitive.primitive, args)
        return (gradInput, gradWeight, gradBias)
    }
}
