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

/// A stack of encoder blocks, the one loop every transformer here runs (a ViT, MAE's encoder, decoder and loss
/// predictor): x [B, N, D] through each block in turn, keeping each block's output and attention when asked.
public struct BlockStack {
    public let blocks: [Block]
    public init(_ blocks: [Block]) { self.blocks = blocks }

    /// x [B, N, D] -> the last block's output [B, N, D], and each block's output and attention [B, heads, N, N] when
    /// asked for.
    public func callAsFunction(_ x: Tensor, keepOutputs: Bool = false, keepAttentions: Bool = false)
        -> (output: Tensor, outputs: [Tensor], attentions: [Tensor])
    {
        var x = x, outputs: [Tensor] = [], attentions: [Tensor] = []
        for block in blocks {
            let (out, attention) = block(x, returnAttention: keepAttentions)
            x = out
            if keepOutputs { outputs.append(out) }
            if let attention { attentions.append(attention) }
        }
        return (x, outputs, attentions)
    }
}
