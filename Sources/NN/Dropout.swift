import Tensors

/// Zeroes values with probability p in training (scaling the rest by 1/(1-p)); the identity in evaluation.
public final class Dropout: Module {
    public let p: Float

    public init(_ p: Float = 0) {
        precondition(p >= 0 && p < 1, "dropout probability \(p) must be in [0, 1)")
        self.p = p
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard training, p > 0 else { return x }
        return GlobalRandom.withGenerator { x.dropout(p, using: &$0) }
    }
}

/// Stochastic depth: in training, drops a residual branch for a whole sample with probability p and scales kept
/// samples by 1/(1-p). Applied to the branch output before the residual add, as timm's `DropPath`.
public final class DropPath: Module {
    public let p: Float

    public init(_ p: Float = 0) {
        precondition(p >= 0 && p < 1, "drop-path probability \(p) must be in [0, 1)")
        self.p = p
        super.init()
    }

    /// x [B, ...]: one keep/drop draw per sample.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard training, p > 0 else { return x }
        let keep = 1 - p
        let batch = x.shape[0]
        let maskValues = GlobalRandom.withGenerator { rng in
            (0..<batch).map { _ in rng.nextFloat() < keep ? 1 / keep : Float(0) }
        }
        // As [1, B, rest] times [1, B, 1]: a per-channel broadcast, which oneDNN runs on its JIT kernel. The natural
        // [B, N, D] x [B, 1, 1] falls to its reference kernel (ONEDNN_VERBOSE: 5.0 s in 96 calls over 3 training
        // steps of the CIFAR ViT at batch 128 and drop path 0.1).
        var mask = Tensor(maskValues, shape: [1, batch, 1])
        if x.dtype != .float32 { mask = mask.converted(to: x.dtype) }  // x's dtype, as timm's new_empty
        return (x.reshape([1, batch, x.count / batch]) * mask).reshape(x.shape)
    }
}
