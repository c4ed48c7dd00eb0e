import Tensors

/// The transformer's feed-forward block: fc1 -> GELU -> dropout -> fc2 -> dropout.
public final class MLP: Module {
    public let fc1: Linear
    public let fc2: Linear
    public let drop: Dropout
    /// `.geluErf` (exact, default) or `.geluTanh`.
    public let activation: UnaryOp

    public init(dim: Int, hiddenDim: Int, dropout: Float = 0, activation: UnaryOp = .geluErf) {
        fc1 = Linear(dim, hiddenDim)
        fc2 = Linear(hiddenDim, dim)
        drop = Dropout(dropout)
        self.activation = activation
        super.init()
    }

    /// x [B, N, D] -> [B, N, D]
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let hidden = drop(fc1(x, activation: activation))  // [B, N, hidden]
        return drop(fc2(hidden))  // [B, N, D]
    }
}
