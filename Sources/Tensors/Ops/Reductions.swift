/// Sums, means and maxima over axes, and argmax.

extension Tensor {
    private func reducedShape(_ axes: [Int]) -> [Int] {
        var out = shape
        for a in axes { out[Shape.axis(a, rank: rank)] = 1 }
        return out
    }

    private func reduceOp(_ op: ReduceOp, axes: [Int]?, keepDim: Bool) -> Tensor {
        let axes = (axes ?? Array(0..<rank)).map { Shape.axis($0, rank: rank) }
        let kept = reducedShape(axes)
        let finalShape = keepDim ? kept : shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
        if rank == 0 { return self }
        let x = self
        let reduced = backend.reduce(op, x, to: kept)
        let out = reduced.rawView(finalShape)
        let n = Float(axes.reduce(1) { $0 * shape[$1] })
        return record(out, inputs: [x], "\(op)") { g in
            let backend = g.backend
            switch op {
            case .sum: return [backend.expand(g.rawView(kept), to: x.shape, scale: 1)]
            case .mean: return [backend.expand(g.rawView(kept), to: x.shape, scale: 1 / n)]
            case .max, .min:
                let g = backend.expand(g.rawView(kept), to: x.shape, scale: 1)
                // The gradient goes to the elements equal to the extreme, shared among ties.
                let hits = x.equalMask(reduced)
                let ties = backend.reduce(.sum, hits, to: kept)
                return [backend.binary(.div, backend.binary(.mul, g, hits), ties)]
            }
        }
    }

    /// 1 where self equals `other` (broadcast), else 0. Not differentiable.
    func equalMask(_ other: Tensor) -> Tensor {
        let b = backend.binary(.sub, self, other)
        let out = Tensor(uninitializedShape: b.shape)
        let src = b.pointer, dst = out.pointer
        for i in 0..<b.count { dst[i] = src[i] == 0 ? 1 : 0 }
        return out
    }

    /// Sum over `axes` (all when nil).
    public func sum(axes: [Int]? = nil, keepDim: Bool = false) -> Tensor { reduceOp(.sum, axes: axes, keepDim: keepDim) }
    public func sum(axis: Int, keepDim: Bool = false) -> Tensor { sum(axes: [axis], keepDim: keepDim) }

    /// Mean over `axes` (all when nil).
    public func mean(axes: [Int]? = nil, keepDim: Bool = false) -> Tensor { reduceOp(.mean, axes: axes, keepDim: keepDim) }
    public func mean(axis: Int, keepDim: Bool = false) -> Tensor { mean(axes: [axis], keepDim: keepDim) }

    /// Maximum over `axes` (all when nil). The gradient is shared equally among tied maxima.
    public func max(axes: [Int]? = nil, keepDim: Bool = false) -> Tensor { reduceOp(.max, axes: axes, keepDim: keepDim) }
    public func max(axis: Int, keepDim: Bool = false) -> Tensor { max(axes: [axis], keepDim: keepDim) }

    /// Index of the largest value along `axis` for every position of the other axes, in row-major order.
    public func argmax(axis: Int = -1) -> [Int] { backend.argmax(self, axis: Shape.axis(axis, rank: rank)) }
}
