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

extension LocalAttention {
    /// A rows x columns grid cut into query blocks (padded at the bottom and right to whole blocks), with the memory
    /// flange each block sees: the index lists t2t's `gather_indices_2d` makes, over raster positions, where
    /// `rows · columns` stands for a zero row (padding and outside the image).
    public struct Grid2D: Sendable {
        public let rows: Int, columns: Int
        public let queryShape: (rows: Int, columns: Int)
        public let memoryFlange: (rows: Int, columns: Int)
        let paddedRows: Int, paddedColumns: Int
        /// Each block's queries, block after block: raster positions or the zero row.
        let queries: [Int]
        /// Each block's memory: the top flange (fh rows from fw left of the block to fw right of it), the left flange
        /// (the block's rows, fw columns), then the block itself; and whether each flange position is outside the image.
        let memory: [Int]
        let flangeOutside: [[Bool]]
        /// For each raster position, its place among `queries`.
        let placeOfPosition: [Int]

        public init(rows: Int, columns: Int, queryShape: (Int, Int), memoryFlange: (Int, Int)) {
            (self.rows, self.columns, self.queryShape, self.memoryFlange) = (rows, columns, queryShape, memoryFlange)
            let (qh, qw) = queryShape, (fh, fw) = memoryFlange
            paddedRows = rows + (qh - rows % qh) % qh
            paddedColumns = columns + (qw - columns % qw) % qw
            let zero = rows * columns
            func index(_ r: Int, _ c: Int) -> Int { r >= 0 && r < rows && c >= 0 && c < columns ? r * columns + c : zero }
            var queries: [Int] = [], memory: [Int] = [], outside: [[Bool]] = []
            var place = [Int](repeating: 0, count: rows * columns)
            for top in stride(from: 0, to: paddedRows, by: qh) {
                for left in stride(from: 0, to: paddedColumns, by: qw) {
                    var flange: [(Int, Int)] = []
                    for r in 0..<fh { for c in 0..<(qw + 2 * fw) { flange.append((top - fh + r, left - fw + c)) } }
                    for r in 0..<qh { for c in 0..<fw { flange.append((top + r, left - fw + c)) } }
                    memory += flange.map { index($0.0, $0.1) }
                    outside.append(flange.map { index($0.0, $0.1) == zero })
                    for r in 0..<qh {
                        for c in 0..<qw {
                            let position = index(top + r, left + c)
                            if position != zero { place[position] = queries.count }
                            queries.append(position)
                            memory.append(position)
                        }
                    }
                }
            }
            (self.queries, self.memory, self.flangeOutside, self.placeOfPosition) = (queries, memory, outside, place)
        }

        var blocks: Int { flangeOutside.count }
        var blockSize: Int { queryShape.rows * queryShape.columns }
        var memorySize: Int { memory.count / max(blocks, 1) }

        /// The raster positions in block raster order (padding left out): the order a 2-D model generates in.
        public var blockRasterOrder: [Int] { queries.filter { $0 != rows * columns } }

        /// For each raster position, the position whose embedding it takes after t2t's `right_shift_blockwise`: the one
        /// before it inside its block (raster order), or the zero row for a block's first (or one after padding).
        var shiftedSources: [Int] {
            let zero = rows * columns
            return (0..<zero).map { position in
                let place = placeOfPosition[position]
                return place % blockSize == 0 ? zero : queries[place - 1]
            }
        }

        /// [blocks, Q, M]: the flange's positions outside the image masked (t2t masks the all-zero keys there); inside
        /// the block, raster causality. Padded positions inside a block are not masked, as in t2t: their keys and
        /// values are zero.
        var bias: Tensor {
            let q = blockSize, m = memorySize, flange = m - q
            var values = [Float](repeating: 0, count: blocks * q * m)
            for n in 0..<blocks {
                for i in 0..<q {
                    let row = (n * q + i) * m
                    for j in 0..<flange where flangeOutside[n][j] { values[row + j] = -1e9 }
                    for j in 0..<q where j > i { values[row + flange + j] = -1e9 }
                }
            }
            return Tensor(values, shape: [blocks, q, m])
        }
    }

    /// t2t's `masked_local_attention_2d` on raster sequences: q (already scaled), k, v [B, h, rows · columns, dk] ->
    /// [B, h, rows · columns, dk]. Each query block sees itself in raster order and its memory flange (`Grid2D`).
    public static func masked2D(q: Tensor, k: Tensor, v: Tensor, grid: Grid2D) -> Tensor {
        let (b, h, dk) = (q.shape[0], q.shape[1], q.shape[3])
        let zero = Tensor.zeros([b, h, 1, dk])
        func gathered(_ t: Tensor, _ indices: [Int], _ per: Int) -> Tensor {  // [B, h, blocks, per, dk]
            Tensor.concat([t, zero], axis: 2).indexSelect(axis: 2, indices).reshape([b, h, grid.blocks, per, dk])
        }
        let queries = gathered(q, grid.queries, grid.blockSize)
        let (keys, values) = (gathered(k, grid.memory, grid.memorySize), gathered(v, grid.memory, grid.memorySize))
        let attended = (queries.matmul(keys, transposeOther: true) + grid.bias).softmax().matmul(values)  // [B, h, blocks, Q, dk]
        return attended.reshape([b, h, grid.blocks * grid.blockSize, dk]).indexSelect(axis: 2, grid.placeOfPosition)
    }
}
