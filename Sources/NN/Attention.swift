import Foundation
import Tensors

/// Multi-head self-attention with one fused qkv projection, as in timm's `Attention`.
public final class Attention: Module {
    public let qkv: Linear  // D -> 3D
    public let proj: Linear  // D -> D
    public let attnDrop: Dropout
    public let projDrop: Dropout
    public let numHeads: Int
    public let scale: Float

    public init(dim: Int, numHeads: Int, qkvBias: Bool = true, attentionDropout: Float = 0, projectionDropout: Float = 0) {
        precondition(dim % numHeads == 0, "width \(dim) is not divisible by \(numHeads) heads")
        qkv = Linear(dim, 3 * dim, bias: qkvBias)
        proj = Linear(dim, dim)
        attnDrop = Dropout(attentionDropout)
        projDrop = Dropout(projectionDropout)
        self.numHeads = numHeads
        scale = 1 / Float(dim / numHeads).squareRoot()
        super.init()
    }

    /// x [B, N, D] -> ([B, N, D], the softmax attention probabilities [B, heads, N, N] if asked for).
    public func callAsFunction(_ x: Tensor, returnAttention: Bool = false) -> (output: Tensor, attention: Tensor?) {
        let (b, n, d) = (x.shape[0], x.shape[1], x.shape[2])
        let headDim = d / numHeads
        // One op reads q, k and v where the projection wrote them (no reorders); the composition below is kept for
        // attention dropout and for probabilities that gradients must flow through.
        if !(training && attnDrop.p > 0) && !(returnAttention && Autograd.isRecording) {
            let (mixed, probabilities) = self.qkv(x).multiHeadAttention(heads: numHeads, scale: scale)  // [B, N, D]
            return (projDrop(proj(mixed)), returnAttention ? probabilities : nil)
        }
        let qkv = self.qkv(x)  // [B, N, 3D]
            .reshape([b, n, 3, numHeads, headDim])  // [B, N, 3, H, hd]
            .permute([2, 0, 3, 1, 4])  // [3, B, H, N, hd]
        let q = qkv.slice(axis: 0, start: 0, length: 1).squeeze(0)  // [B, H, N, hd] (views)
        let k = qkv.slice(axis: 0, start: 1, length: 1).squeeze(0)
        let v = qkv.slice(axis: 0, start: 2, length: 1).squeeze(0)
        let scores = q.matmul(k, transposeOther: true) * scale  // [B, H, N, N]
        let probabilities = scores.softmax()  // [B, H, N, N]
        let mixed = attnDrop(probabilities).matmul(v)  // [B, H, N, hd]
        let merged = mixed.permute([0, 2, 1, 3]).reshape([b, n, d])  // [B, N, D]
        return (projDrop(proj(merged)), returnAttention ? probabilities : nil)
    }
}
