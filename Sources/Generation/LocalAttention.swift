import Tensors

/// The Image Transformer's masked local attention, made of batched matrix products over blocks so that a long
/// sequence costs L · 2·block instead of L².
public enum LocalAttention {
    /// t2t's `masked_local_attention_1d`: the sequence in blocks of `blockLength` (one block when it is shorter than
    /// two); a query at position p sees the positions j ≤ p of its own block and all of the block before:
    /// j ≤ p and j ≥ (p / block − 1) · block. q (already scaled), k, v: [B, h, L, dk] -> [B, h, L, dk].
    ///
    /// t2t computes the first block alone and the others against [previous block, own block]; here every block
    /// takes the second form, the first with a zero block before it that the mask removes (its weights are
    /// exp(-1e9) = 0 in float32), which gives the same numbers with one product.
    public static func masked1D(q: Tensor, k: Tensor, v: Tensor, blockLength requested: Int) -> Tensor {
        let (b, h, length, dk) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let block = length < 2 * requested ? length : requested
        let blocks = (length + block - 1) / block
        let padded = blocks * block
        func blocked(_ t: Tensor) -> Tensor {  // [B, h, L, dk] -> [B, h, n, block, dk], zero-padded at the end
            let full = padded == length ? t : Tensor.concat([t, Tensor.zeros([b, h, padded - length, dk])], axis: 2)
            return full.reshape([b, h, blocks, block, dk])
        }
        func local(_ t: Tensor) -> Tensor {  // [B, h, n, 2·block, dk]: the block before, then the block
            let previous = Tensor.concat(
                [Tensor.zeros([b, h, 1, block, dk]), t.slice(axis: 2, start: 0, length: blocks - 1)], axis: 2)
            return Tensor.concat([previous, t], axis: 3)
        }
        let (qb, kb, vb) = (blocked(q), blocked(k), blocked(v))
        let scores = qb.matmul(local(kb), transposeOther: true) + bias(blocks: blocks, block: block)  // [B, h, n, block, 2·block]
        let attended = scores.softmax().matmul(local(vb))  // [B, h, n, block, dk]
        let sequence = attended.reshape([b, h, padded, dk])
        return padded == length ? sequence : sequence.slice(axis: 2, start: 0, length: length)
    }

    /// [n, block, 2·block]: 0 where query i of block n may see memory j (j ≤ i + block; in block 0, only its own
    /// half), -1e9 elsewhere (t2t's `ones_matrix_band_part(block, 2 block, -1, block)`).
    static func bias(blocks: Int, block: Int) -> Tensor {
        var values = [Float](repeating: 0, count: blocks * block * 2 * block)
        for n in 0..<blocks {
            for i in 0..<block {
                for j in 0..<(2 * block) where j > i + block || (n == 0 && j < block) {
                    values[(n * block + i) * 2 * block + j] = -1e9
                }
            }
        }
        return Tensor(values, shape: [blocks, block, 2 * block])
    }
}
