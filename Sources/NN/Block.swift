import Tensors

/// A pre-norm transformer encoder block (ViT, timm's `Block`):
/// x = x + DropPath(Attention(LayerNorm(x))); x = x + DropPath(MLP(LayerNorm(x))).
public final class Block: Module {
    public let norm1: LayerNorm
    public let attn: Attention
    public let norm2: LayerNorm
    public let mlp: MLP
    public let dropPath: DropPath

    public struct Options {
        public var mlpRatio: Float = 4
        public var qkvBias = true
        public var eps: Float = 1e-6
        public var dropout: Float = 0
        public var attentionDropout: Float = 0
        public var dropPath: Float = 0
        public var activation: UnaryOp = .geluErf
        public init() {}
    }

    public init(dim: Int, heads: Int, options: Options = Options()) {
        norm1 = LayerNorm(dim, eps: options.eps)
        attn = Attention(
            dim: dim, numHeads: heads, qkvBias: options.qkvBias,
            attentionDropout: options.attentionDropout, projectionDropout: options.dropout)
        norm2 = LayerNorm(dim, eps: options.eps)
        mlp = MLP(
            dim: dim, hiddenDim: Int(Float(dim) * options.mlpRatio), dropout: options.dropout,
            activation: options.activation)
        dropPath = DropPath(options.dropPath)
        super.init()
    }

    /// x [B, N, D] -> ([B, N, D], attention probabilities [B, heads, N, N] if asked for).
    public func callAsFunction(_ x: Tensor, returnAttention: Bool = false) -> (output: Tensor, attention: Tensor?) {
        let (mixed, attention) = attn(norm1(x), returnAttention: returnAttention)
        let h = x + dropPath(mixed)  // [B, N, D]
        return (h + dropPath(mlp(norm2(h))), attention)
    }
}
