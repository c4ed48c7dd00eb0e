/// Scaled dot-product attention over all heads as one op.

extension Tensor {
    /// softmax(q·kᵀ·scale)·v for every head, read straight from a fused projection self [B, N, 3·D] (q, k, v each
    /// [B, N, heads, D/heads], timm's `qkv` order), heads merged back: -> (output [B, N, D], probabilities
    /// [B, heads, N, N]). The same numbers as reshape, permute, three slices, two matmuls, softmax and a permute,
    /// as one op: the CPU backend reads q, k and v where they lie and writes the merged heads in place, so no
    /// reorder runs either way, and the backward writes d(qkv) directly instead of zero-filling three slice
    /// gradients and adding them. The probabilities are a side output: no gradient flows back through them.
    public func multiHeadAttention(heads: Int, scale: Float) -> (output: Tensor, probabilities: Tensor) {
        precondition(
            rank == 3 && shape[2] % (3 * heads) == 0, "attention needs qkv [B, N, 3·D] with D divisible by \(heads) heads, got \(shape)")
        let qkv = self
        let (out, probabilities) = backend.attention(qkv: qkv, heads: heads, scale: scale)
        let recorded = record(out, inputs: [qkv], "attention") { g in
            [g.backend.attentionBackward(gradOutput: g, qkv: qkv, probabilities: probabilities, heads: heads, scale: scale)]
        }
        return (recorded, probabilities)
    }
}
