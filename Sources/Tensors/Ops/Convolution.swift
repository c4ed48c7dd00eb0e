import Foundation

/// Convolutional ops on channels-first images [B, C, H, W], as PyTorch computes them: 2-D convolution, max and
/// average pooling, batch and group normalisation, weight standardisation.

/// How a convolution or pooling pads its input.
public enum SpatialPadding: Hashable, Sendable {
    /// Zeros (or, for max pooling, nothing) before and after each spatial axis: [top, left] and [bottom, right].
    case explicit(before: [Int], after: [Int])
    /// TensorFlow's "SAME": the output has ceil(size / stride) positions, the total padding that needs split with the
    /// smaller half first (timm's `Conv2dSame`, `pad_same`).
    case same

    /// The same padding on every side.
    public static func symmetric(_ p: Int) -> SpatialPadding { .explicit(before: [p, p], after: [p, p]) }

    /// The padding before and after each spatial axis for an input of [H, W].
    public func resolved(input: [Int], kernel: [Int], stride: [Int], dilation: [Int]) -> (before: [Int], after: [Int]) {
        switch self {
        case let .explicit(before, after): return (before, after)
        case .same:
            let total = (0..<2).map { axis in
                let outputs = (input[axis] + stride[axis] - 1) / stride[axis]
                return Swift.max((outputs - 1) * stride[axis] + (kernel[axis] - 1) * dilation[axis] + 1 - input[axis], 0)
            }
            return (total.map { $0 / 2 }, total.map { $0 - $0 / 2 })
        }
    }
}

extension Tensor {
    /// The channel block b of a channel-blocked image [B, C / b, H, W, b]; 1 for channels-first [B, C, H, W].
    public var channelBlock: Int { rank == 5 ? shape[4] : 1 }

    /// C of an image, channels-first or channel-blocked.
    public var imageChannels: Int { rank == 5 ? shape[1] * shape[4] : shape[1] }

    /// The channel block this tensor's backend runs convolutions fastest on (1: channels-first).
    public var preferredChannelBlock: Int { device.backend.preferredChannelBlock }

    /// Channels-first images [B, C, H, W] as channel-blocked [B, C / b, H, W, b]: channel c at block c / b, lane
    /// c % b, oneDNN's nChw8c / nChw16c. Convolutions, pooling, batch norm and every elementwise op keep the layout,
    /// so a convnet reorders once at its input and once at its features instead of around every op.
    public func channelBlocked(_ block: Int) -> Tensor {
        precondition(rank == 4 && block >= 1 && shape[1] % block == 0, "\(shape) cannot be split into channel blocks of \(block)")
        guard block > 1 else { return self }
        return reshape([shape[0], shape[1] / block, block, shape[2], shape[3]]).permute([0, 1, 3, 4, 2])
    }

    /// Channel-blocked images [B, C / b, H, W, b] back as channels-first [B, C, H, W] (channels-first as they are).
    public func channelsFirst() -> Tensor {
        guard rank == 5 else { return self }
        return permute([0, 1, 4, 2, 3]).reshape([shape[0], shape[1] * shape[4], shape[2], shape[3]])
    }

    private func window(kernel: [Int], stride: Int, padding: SpatialPadding, dilation: Int, groups: Int) -> WindowGeometry {
        precondition(rank == 4 || rank == 5, "expected images [B, C, H, W] or [B, C / b, H, W, b], got \(shape)")
        let size = [shape[2], shape[3]]
        let strides = [stride, stride], dilations = [dilation, dilation]
        let (before, after) = padding.resolved(input: size, kernel: kernel, stride: strides, dilation: dilations)
        let g = WindowGeometry(
            kernel: kernel, stride: strides, paddingBefore: before, paddingAfter: after, dilation: dilations, groups: groups)
        precondition(
            stride >= 1 && dilation >= 1 && before.allSatisfy { $0 >= 0 } && after.allSatisfy { $0 >= 0 }
                && g.outputSize(size).allSatisfy { $0 >= 1 },
            "window \(g) does not fit an input of \(shape)")
        return g
    }

    /// 2-D convolution: self [B, Cin, H, W], weight [Cout, Cin / groups, kH, kW], bias [Cout] ->
    /// [B, Cout, H', W']; channel-blocked, [B, Cin / b, H, W, b] -> [B, Cout / b, H', W', b]. Runs in float32 (a
    /// bf16 input is widened).
    public func conv2d(
        weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: SpatialPadding = .symmetric(0), dilation: Int = 1,
        groups: Int = 1
    ) -> Tensor {
        precondition(
            weight.rank == 4 && imageChannels == weight.shape[1] * groups && weight.shape[0] % groups == 0,
            "conv2d: input \(shape) does not fit weight \(weight.shape) in \(groups) groups")
        let x = cast(to: .float32), w = weight.cast(to: .float32), b = bias?.cast(to: .float32)
        let g = x.window(kernel: Array(weight.shape[2...]), stride: stride, padding: padding, dilation: dilation, groups: groups)
        let out = backend.convolution(x, weight: w, bias: b, g)
        return record(out, inputs: [x, w] + (b.map { [$0] } ?? []), "conv2d") { grad in
            let grads = grad.backend.convolutionBackward(
                gradOutput: grad, input: x, weight: w, g, inputGradient: x.requiresGrad, biasGradient: b?.requiresGrad == true)
            return [grads.input, grads.weight] + (b == nil ? [] : [grads.bias])
        }
    }

    private func pool(_ kind: PoolingKind, kernel: Int, stride: Int?, padding: SpatialPadding) -> Tensor {
        let x = cast(to: .float32)
        let g = x.window(kernel: [kernel, kernel], stride: stride ?? kernel, padding: padding, dilation: 1, groups: 1)
        let (out, workspace) = backend.pooling(x, kind, g)
        return record(out, inputs: [x], "\(kind) pool") { grad in
            [grad.backend.poolingBackward(gradOutput: grad, input: x, workspace: workspace, kind, g)]
        }
    }

    /// Max pooling over k x k windows (stride defaults to k); padded positions never win.
    public func maxPool2d(kernel: Int, stride: Int? = nil, padding: SpatialPadding = .symmetric(0)) -> Tensor {
        pool(.max, kernel: kernel, stride: stride, padding: padding)
    }

    /// Average pooling over k x k windows; `countIncludePad` divides by k² everywhere (PyTorch's default), else by the
    /// positions inside the image.
    public func avgPool2d(kernel: Int, stride: Int? = nil, padding: SpatialPadding = .symmetric(0), countIncludePad: Bool = true)
        -> Tensor
    {
        pool(countIncludePad ? .average : .averageExcludingPadding, kernel: kernel, stride: stride, padding: padding)
    }

    /// Batch normalisation per channel of [B, C, H, W] (`torch.nn.functional.batch_norm`). Training normalises with
    /// the batch's mean and biased variance and moves the running statistics toward the batch's, the variance
    /// unbiased: running = (1 - momentum) · running + momentum · batch. Evaluation uses the running statistics.
    public func batchNorm(
        weight: Tensor?, bias: Tensor?, runningMean: Tensor, runningVariance: Tensor, training: Bool, momentum: Float = 0.1,
        eps: Float = 1e-5
    ) -> Tensor {
        precondition(rank >= 2 && runningMean.shape == [imageChannels], "batchNorm: \(shape) against \(runningMean.shape) statistics")
        let x = cast(to: .float32)
        let (out, mean, variance) = backend.batchNorm(
            x, weight: weight, bias: bias, statistics: training ? nil : (runningMean, runningVariance), eps: eps)
        if training {
            let n = Float(x.count / x.imageChannels)
            backend.lerp(runningMean, toward: mean, decay: 1 - momentum)
            backend.lerp(
                runningVariance, toward: backend.unary(.affine(scale: n / Swift.max(n - 1, 1), shift: 0), variance), decay: 1 - momentum)
        }
        let parameters = [weight, bias].compactMap { $0 }
        return record(out, inputs: [x] + parameters, "batchNorm") { grad in
            let grads = grad.backend.batchNormBackward(
                gradOutput: grad, input: x, mean: mean, variance: variance, weight: weight, bias: bias, eps: eps,
                fixedStatistics: !training)
            return [grads.input] + (weight == nil ? [] : [grads.weight]) + (bias == nil ? [] : [grads.bias])
        }
    }

    /// Group normalisation (Wu & He 2018, `torch.nn.functional.group_norm`): each image's channels in `groups`
    /// groups, each group normalised over its channels and positions, then a per-channel scale and shift.
    public func groupNorm(groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        precondition(rank >= 2 && rank != 5 && shape[1] % groups == 0, "groupNorm: \(shape) in \(groups) groups (channels first)")
        let b = shape[0], c = shape[1]
        var out = reshape([b, groups, count / (b * groups)]).layerNorm(weight: nil, bias: nil, eps: eps).reshape(shape)
        let perChannel = [1, c] + [Int](repeating: 1, count: rank - 2)  // [1, C, 1, 1]
        if let weight { out = out * weight.reshape(perChannel) }
        if let bias { out = out + bias.reshape(perChannel) }
        return out
    }

    /// Weight standardisation (Qiao et al. 2019; BiT's `StdConv2d`): each output channel of a weight [Cout, ...]
    /// shifted to zero mean and divided by sqrt(biased variance + eps) (timm), or with `epsOnStandardDeviation` by
    /// (standard deviation + eps) (the JAX `StdConv` of the original R50+ViT).
    public func standardized(eps: Float, epsOnStandardDeviation: Bool = false) -> Tensor {
        let rows = reshape([shape[0], count / shape[0]])  // [Cout, Cin·kH·kW]
        guard epsOnStandardDeviation else { return rows.layerNorm(weight: nil, bias: nil, eps: eps).reshape(shape) }
        let centred = rows - rows.mean(axis: 1, keepDim: true)
        let deviation = centred.square().mean(axis: 1, keepDim: true).sqrt()  // [Cout, 1]
        return (centred / (deviation + eps)).reshape(shape)
    }
}
