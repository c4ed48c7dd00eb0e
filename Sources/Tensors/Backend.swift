/// Elementwise operations on two tensors, with NumPy broadcasting.
public enum BinaryOp: String, Sendable {
    case add, sub, mul, div, max, min
}

/// Elementwise operations on one tensor. `affine` is scale * x + shift; `power` is scale * x^exponent.
public enum UnaryOp: Hashable, Sendable {
    case exp, log, sqrt, tanh, relu, sigmoid, abs, square
    /// GELU, exact: x * Φ(x) with the error function.
    case geluErf
    /// GELU, tanh approximation.
    case geluTanh
    case affine(scale: Float, shift: Float)
    case power(scale: Float, exponent: Float)
}

/// Reductions over axes.
public enum ReduceOp: String, Sendable {
    case sum, mean, max, min
}

/// One Adam(W) update of a parameter, as `torch.optim.Adam`/`AdamW` compute it, with the step-dependent factors
/// worked out by the optimiser: g' = g + l2·w; m = β1·m + (1-β1)·g'; v = β2·v + (1-β2)·g'²;
/// w = w·decay - stepSize·m / (√v / correction2Root + eps).
public struct AdamUpdate: Sendable {
    public var beta1: Float, beta2: Float, eps: Float
    /// lr / (1 - β1^t)
    public var stepSize: Float
    /// √(1 - β2^t)
    public var correction2Root: Float
    /// 1 - lr·weight decay for AdamW (decoupled), 1 for Adam.
    public var decay: Float
    /// The weight decay folded into the gradient (Adam's L2), 0 for AdamW.
    public var l2: Float

    public init(beta1: Float, beta2: Float, eps: Float, stepSize: Float, correction2Root: Float, decay: Float, l2: Float) {
        (self.beta1, self.beta2, self.eps, self.stepSize, self.correction2Root, self.decay, self.l2) =
            (beta1, beta2, eps, stepSize, correction2Root, decay, l2)
    }
}

/// One SGD update, as `torch.optim.SGD`: d = g + wd·w; with momentum μ, buf = d on the first step, else μ·buf + d,
/// and d = d + μ·buf (Nesterov) or buf; w = w - lr·d.
public struct SGDUpdate: Sendable {
    public var learningRate: Float, weightDecay: Float, momentum: Float
    public var nesterov: Bool
    /// The first step seeds the momentum buffer with d.
    public var firstStep: Bool

    public init(learningRate: Float, weightDecay: Float, momentum: Float, nesterov: Bool, firstStep: Bool) {
        (self.learningRate, self.weightDecay, self.momentum, self.nesterov, self.firstStep) =
            (learningRate, weightDecay, momentum, nesterov, firstStep)
    }
}

/// The window of a 2-D convolution or pooling over [B, C, H, W]: kernel, stride, padding before and after each
/// spatial axis (unequal for TensorFlow's "same" padding), dilation (1: none) and, for convolutions, groups.
public struct WindowGeometry: Hashable, Sendable, CustomStringConvertible {
    /// [kH, kW]
    public var kernel: [Int]
    public var stride: [Int]
    /// [top, left]
    public var paddingBefore: [Int]
    /// [bottom, right]
    public var paddingAfter: [Int]
    public var dilation: [Int]
    public var groups: Int

    public init(kernel: [Int], stride: [Int], paddingBefore: [Int], paddingAfter: [Int], dilation: [Int] = [1, 1], groups: Int = 1) {
        (self.kernel, self.stride, self.paddingBefore, self.paddingAfter, self.dilation, self.groups) =
            (kernel, stride, paddingBefore, paddingAfter, dilation, groups)
    }

    /// The output's [H, W] for an input of [H, W] (floor division, as PyTorch without ceil_mode).
    public func outputSize(_ input: [Int]) -> [Int] {
        (0..<2).map { axis in
            let span = dilation[axis] * (kernel[axis] - 1) + 1
            return (input[axis] + paddingBefore[axis] + paddingAfter[axis] - span) / stride[axis] + 1
        }
    }

    public var description: String {
        "k\(kernel) s\(stride) p\(paddingBefore)\(paddingAfter) d\(dilation) g\(groups)"
    }
}

/// Max pooling, or average pooling counting the padding in the divisor (PyTorch's default) or not.
public enum PoolingKind: String, Sendable {
    case max, average, averageExcludingPadding
}

/// The raw math under the ops: each function reads its input tensors and returns new ones, never recording
/// gradients. The ops (`Ops/`) add autograd on top and are all that models call; optimisers, weight averages and
/// tensor factories write through the in-place kernels at the end. A second backend (a GPU) is a new conformance
/// here and leaves every caller as it is. `ReferenceBackend` implements every kernel with plain loops, to test the
/// fast ones against.
public protocol Backend {
    /// a [..., M, K] @ b [..., K, N] -> [..., M, N], batch axes broadcast. The transpose flags read a or b as
    /// their last two axes swapped, without copying. `bias` [N] and `activation` are fused into the product.
    func matmul(
        _ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?,
        activation: UnaryOp?
    ) -> Tensor
    /// a (op) b with broadcasting.
    func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor
    func unary(_ op: UnaryOp, _ x: Tensor) -> Tensor
    /// d(loss)/d(x) for y = op(x), given d(loss)/d(y).
    func unaryBackward(_ op: UnaryOp, gradOutput: Tensor, input: Tensor) -> Tensor
    /// Softmax (or log-softmax) over the last axis.
    func softmax(_ x: Tensor, log: Bool) -> Tensor
    func softmaxBackward(gradOutput: Tensor, output: Tensor, log: Bool) -> Tensor
    /// Layer normalisation over the last axis; also returns the per-row mean and variance for the backward pass.
    func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float)
        -> (output: Tensor, mean: Tensor, variance: Tensor)
    func layerNormBackward(
        gradOutput: Tensor, input: Tensor, mean: Tensor, variance: Tensor,
        weight: Tensor?, bias: Tensor?, eps: Float
    )
        -> (input: Tensor, weight: Tensor?, bias: Tensor?)
    /// Reduces `x` to `shape`: the same rank, with 1 on each reduced axis.
    func reduce(_ op: ReduceOp, _ x: Tensor, to shape: [Int]) -> Tensor
    /// `x` broadcast to `shape` (the same rank) and multiplied by `scale`: the adjoint of a sum (1) or mean (1/n).
    func expand(_ x: Tensor, to shape: [Int], scale: Float) -> Tensor
    /// Index of the largest value along `axis`, for every position of the other axes (row-major).
    func argmax(_ x: Tensor, axis: Int) -> [Int]
    /// The axes reordered: output axis i is input axis `axes[i]`. Materialised.
    func permute(_ x: Tensor, _ axes: [Int]) -> Tensor
    func concat(_ xs: [Tensor], axis: Int) -> Tensor
    /// `length` entries of `axis` from `start`. Materialised.
    func slice(_ x: Tensor, axis: Int, start: Int, length: Int) -> Tensor
    /// Zeros of `shape` with `x` written at `start` along `axis` (the adjoint of `slice`).
    func unslice(_ x: Tensor, shape: [Int], axis: Int, start: Int) -> Tensor
    /// For every position p of the axes before `axis`, entries `indices[p][j]` along `axis` (one shared list when
    /// `indices.count == 1`). Output has `indices[0].count` entries on `axis`.
    func gather(_ x: Tensor, axis: Int, indices: [[Int]]) -> Tensor
    /// Adjoint of `gather`: zeros of `shape` with each gathered entry added back where it came from.
    func scatterAdd(_ x: Tensor, shape: [Int], axis: Int, indices: [[Int]]) -> Tensor
    /// Multi-head attention read straight from a fused projection `qkv` [B, N, 3·D] (q, k, v, each [N, heads, D/heads]
    /// per image, timm's order): probabilities = softmax(q·kᵀ·scale) [B, heads, N, N] and output = probabilities·v
    /// with the heads merged back, [B, N, D].
    func attention(qkv: Tensor, heads: Int, scale: Float) -> (output: Tensor, probabilities: Tensor)
    /// d(loss)/d(qkv) [B, N, 3·D] of `attention`, given d(loss)/d(output) [B, N, D].
    func attentionBackward(gradOutput: Tensor, qkv: Tensor, probabilities: Tensor, heads: Int, scale: Float) -> Tensor

    /// The channel block b of the layout [B, C / b, H, W, b] this backend's convolutions run fastest on, or 1 when
    /// that is channels-first [B, C, H, W]. The image kernels below take either layout and keep it.
    var preferredChannelBlock: Int { get }
    /// 2-D convolution (cross-correlation, as PyTorch's): x [B, Cin, H, W], weight [Cout, Cin / groups, kH, kW],
    /// bias [Cout] -> [B, Cout, H', W'] (channel-blocked: [B, Cin / b, H, W, b] -> [B, Cout / b, H', W', b]).
    func convolution(_ x: Tensor, weight: Tensor, bias: Tensor?, _ geometry: WindowGeometry) -> Tensor
    /// The gradients of `convolution` with respect to its input (when `inputGradient`), weight and bias (when
    /// `biasGradient`), given d(loss)/d(output).
    func convolutionBackward(
        gradOutput: Tensor, input: Tensor, weight: Tensor, _ geometry: WindowGeometry, inputGradient: Bool, biasGradient: Bool
    ) -> (input: Tensor?, weight: Tensor, bias: Tensor?)
    /// Pooling over each channel's H x W: [B, C, H, W] -> [B, C, H', W'], and what the backward pass needs beyond the
    /// input (max pooling's choices), in a form only this backend reads.
    func pooling(_ x: Tensor, _ kind: PoolingKind, _ geometry: WindowGeometry) -> (output: Tensor, workspace: Tensor?)
    func poolingBackward(gradOutput: Tensor, input: Tensor, workspace: Tensor?, _ kind: PoolingKind, _ geometry: WindowGeometry)
        -> Tensor
    /// Batch normalisation over [B, C, H, W] per channel: with `statistics` (evaluation) those are used; without,
    /// the batch's own mean and biased variance are, and returned.
    func batchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, statistics: (mean: Tensor, variance: Tensor)?, eps: Float)
        -> (output: Tensor, mean: Tensor, variance: Tensor)
    /// The gradients of `batchNorm`; `fixedStatistics` when the forward pass used given statistics (their
    /// dependence on the input is then none).
    func batchNormBackward(
        gradOutput: Tensor, input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, eps: Float,
        fixedStatistics: Bool
    ) -> (input: Tensor, weight: Tensor?, bias: Tensor?)

    // MARK: In place: dtypes, fills and the training updates (what optimisers and weight averages call)

    /// `source`'s values written into `destination` (same element count), converted to its dtype.
    func cast(_ source: Tensor, into destination: Tensor)
    /// Every element of `x` set to `value`.
    func fill(_ x: Tensor, _ value: Float)
    /// One Adam(W) step on a float32 parameter and its moments, in place.
    func adamUpdate(_ parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor, _ update: AdamUpdate)
    /// One SGD step on a float32 parameter (and its momentum buffer when momentum is on), in place.
    func sgdUpdate(_ parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, _ update: SGDUpdate)
    /// average = decay·average + (1 - decay)·x, in place (an exponential moving average of weights).
    func lerp(_ average: Tensor, toward x: Tensor, decay: Float)
    /// Σ x², accumulated in double precision (the global gradient norm of clipping).
    func sumOfSquares(_ x: Tensor) -> Double
}
