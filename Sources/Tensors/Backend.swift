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

/// The raw math under the ops: each function reads its input tensors and returns new ones, never recording
/// gradients. The ops (`Ops/`) add autograd on top and are all that models call, so a second backend (CUDA) or
/// dtype (bf16) is a new conformance here and leaves every caller as it is.
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
}
