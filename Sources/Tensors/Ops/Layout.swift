/// Ops that move values without computing new ones: permute, concat, split, slice, gather.

extension Tensor {
    /// The same values in another dtype (rounded to nearest-even going to bfloat16). The gradient comes back in
    /// this tensor's dtype. A tensor already of `dtype` is returned as it is.
    public func cast(to dtype: DType) -> Tensor {
        guard dtype != self.dtype else { return self }
        let inputType = self.dtype
        return record(converted(to: dtype), inputs: [self], "cast") { g in [g.converted(to: inputType)] }
    }

    /// Reorders the axes: output axis i is input axis `axes[i]`. Materialised (oneDNN reorder).
    public func permute(_ axes: [Int]) -> Tensor {
        let axes = axes.map { Shape.axis($0, rank: rank) }
        let out = backend.permute(self, axes)
        var inverse = [Int](repeating: 0, count: axes.count)
        for (i, a) in axes.enumerated() { inverse[a] = i }
        return record(out, inputs: [self], "permute") { g in [g.backend.permute(g, inverse)] }
    }

    /// Swaps two axes. Materialised.
    public func transpose(_ a: Int, _ b: Int) -> Tensor {
        var axes = Array(0..<rank)
        axes.swapAt(Shape.axis(a, rank: rank), Shape.axis(b, rank: rank))
        return permute(axes)
    }

    /// Inserts an axis of size 1 (a view).
    public func unsqueeze(_ axis: Int) -> Tensor {
        var s = shape
        s.insert(1, at: Shape.axis(axis, rank: rank + 1))
        return reshape(s)
    }

    /// Removes an axis of size 1 (a view).
    public func squeeze(_ axis: Int) -> Tensor {
        let a = Shape.axis(axis, rank: rank)
        precondition(shape[a] == 1, "squeeze: axis \(axis) of \(shape) is not 1")
        var s = shape
        s.remove(at: a)
        return reshape(s)
    }

    /// `length` entries of `axis` from `start`. A view when slicing the first axis (or all leading axes are 1),
    /// else a copy.
    public func slice(axis: Int, start: Int, length: Int) -> Tensor {
        let a = Shape.axis(axis, rank: rank)
        precondition(
            start >= 0 && length >= 0 && start + length <= shape[a],
            "slice \(start)..<\(start + length) is outside axis \(axis) of size \(shape[a])")
        var outShape = shape
        outShape[a] = length
        let out: Tensor
        if shape[..<a].allSatisfy({ $0 == 1 }) {
            out = Tensor(shape: outShape, storage: storage, offset: offset + start * Shape.contiguousStrides(shape)[a])
        } else {
            out = backend.slice(self, axis: a, start: start, length: length)
        }
        let inputShape = shape
        return record(out, inputs: [self], "slice") { g in
            [g.backend.unslice(g, shape: inputShape, axis: a, start: start)]
        }
    }

    /// Cuts `axis` into consecutive pieces of the given sizes.
    public func split(_ sizes: [Int], axis: Int) -> [Tensor] {
        let a = Shape.axis(axis, rank: rank)
        precondition(sizes.reduce(0, +) == shape[a], "split sizes \(sizes) do not add up to \(shape[a])")
        var start = 0
        return sizes.map { size in
            defer { start += size }
            return slice(axis: a, start: start, length: size)
        }
    }

    /// Joins tensors along `axis`; all other axes must agree.
    public static func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
        precondition(!tensors.isEmpty, "concat of no tensors")
        let a = Shape.axis(axis, rank: tensors[0].rank)
        for t in tensors {
            precondition(
                t.rank == tensors[0].rank
                    && zip(t.shape, tensors[0].shape).enumerated().allSatisfy { $0.offset == a || $0.element.0 == $0.element.1 },
                "concat along \(axis): shapes \(tensors.map(\.shape)) differ off that axis")
        }
        let dtype = tensors.dropFirst().reduce(tensors[0].dtype) { Autocast.promoted($0, $1.dtype) }
        if tensors.contains(where: { $0.dtype != dtype }) {
            return concat(tensors.map { $0.cast(to: dtype) }, axis: axis)  // promoted, as torch.cat does
        }
        let out = tensors[0].backend.concat(tensors, axis: a)
        let sizes = tensors.map { $0.shape[a] }
        return record(out, inputs: tensors, "concat") { g in
            var start = 0
            return sizes.map { size in
                defer { start += size }
                return g.backend.slice(g, axis: a, start: start, length: size)
            }
        }
    }

    /// The same entries of `axis` for every position of the axes before it: out[..., j, ...] = self[..., indices[j], ...].
    public func indexSelect(axis: Int, _ indices: [Int]) -> Tensor { gather(axis: axis, [indices]) }

    /// Per-position index lists: for each position p of the axes before `axis` (row-major), the entries
    /// `indices[p]` of `axis`; every list has the same length. With one list, it serves every position. MAE keeps
    /// its visible patches with this: x [B, N, D].gather(axis: 1, keep) with keep[b] the kept patch indices of b.
    public func gather(axis: Int, _ indices: [[Int]]) -> Tensor {
        let a = Shape.axis(axis, rank: rank)
        let out = backend.gather(self, axis: a, indices: indices)
        let inputShape = shape
        return record(out, inputs: [self], "gather") { g in
            [g.backend.scatterAdd(g, shape: inputShape, axis: a, indices: indices)]
        }
    }
}

extension Tensor {
    /// Tensors of one shape stacked along a new first axis (a copy; outside the graph).
    public static func stack(_ tensors: [Tensor]) -> Tensor {
        precondition(!tensors.isEmpty, "stack of no tensors")
        let shape = tensors[0].shape
        let dtype = tensors[0].dtype
        let out = Tensor(uninitializedShape: [tensors.count] + shape, dtype: dtype)
        let bytes = tensors[0].count * dtype.byteSize
        for (i, t) in tensors.enumerated() {
            precondition(t.shape == shape && t.dtype == dtype, "stack: \(t.shape) \(t.dtype) differs from \(shape) \(dtype)")
            (out.raw + i * bytes).copyMemory(from: t.raw, byteCount: bytes)
        }
        return out
    }
}
