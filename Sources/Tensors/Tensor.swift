import Foundation

/// An n-dimensional array (rank 0 to 6) of `float32` values in contiguous row-major storage, and a node of the
/// autograd graph.
///
/// Tensors are reference types: a parameter is one object that the model reads and the optimiser updates in place.
/// `reshape` and slices along the first axis are views that share storage; every other op makes a new tensor.
public final class Tensor {
    public static let maxRank = 6

    /// The size of each axis, outermost first.
    public let shape: [Int]
    public private(set) var storage: Storage
    /// Where this tensor's first element sits in `storage`, in elements (non-zero for views).
    public private(set) var offset: Int

    /// Whether gradients flow to this tensor. Parameters and their descendants have it.
    public var requiresGrad: Bool
    /// The accumulated gradient (leaves only: parameters and inputs marked `requiresGrad`).
    public var grad: Tensor?
    /// The recorded op that produced this tensor, or nil for a leaf or a tensor made while not recording.
    var gradNode: GradNode?
    /// Set on a weight that inference will only read (`freezeForInference()`): matmuls then keep a copy of it in the
    /// layout the primitive prefers, made once per primitive, instead of reading the plain row-major one each time.
    public private(set) var isFrozenForInference = false
    /// The packed copies, by matmul primitive (dropped whenever the values change).
    var packedCopies: [String: PackedWeights] = [:]
    /// The int8 copy `--precision int8` multiplies by (`quantizeForInference()`), dropped with the packs.
    public internal(set) var quantized: QuantizedWeight?

    public init(shape: [Int], storage: Storage, offset: Int = 0, requiresGrad: Bool = false) {
        precondition(shape.count <= Tensor.maxRank, "rank \(shape.count) is above the maximum of \(Tensor.maxRank)")
        precondition(shape.allSatisfy { $0 >= 0 }, "negative size in shape \(shape)")
        precondition(offset + Shape.count(shape) <= storage.count, "view \(shape) at \(offset) overruns its storage")
        self.shape = shape
        self.storage = storage
        self.offset = offset
        self.requiresGrad = requiresGrad
    }

    /// A new, uninitialised tensor.
    public convenience init(uninitializedShape shape: [Int], dtype: DType = .float32, device: Device = .cpu) {
        self.init(shape: shape, storage: Storage(count: Shape.count(shape), dtype: dtype, device: device))
    }

    /// A tensor holding `values` in row-major order.
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        precondition(values.count == Shape.count(shape), "\(values.count) values do not fill shape \(shape)")
        self.init(uninitializedShape: shape)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
        self.requiresGrad = requiresGrad
    }

    /// A rank-0 tensor.
    public convenience init(scalar: Float) { self.init([scalar], shape: []) }

    public static func zeros(_ shape: [Int], dtype: DType = .float32, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(shape: shape, storage: Storage(count: Shape.count(shape), dtype: dtype, zeroed: true))
        t.requiresGrad = requiresGrad
        return t
    }

    public static func full(_ shape: [Int], _ value: Float, dtype: DType = .float32, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitializedShape: shape, dtype: dtype)
        t.device.backend.fill(t, value)
        t.requiresGrad = requiresGrad
        return t
    }

    public static func ones(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        full(shape, 1, requiresGrad: requiresGrad)
    }

    /// Values drawn from N(mean, std²) with a seeded generator.
    public static func randn(
        _ shape: [Int], mean: Float = 0, std: Float = 1,
        using rng: inout SeededGenerator, requiresGrad: Bool = false
    ) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        let p = t.pointer
        for i in 0..<t.count { p[i] = mean + std * rng.nextNormal() }
        t.requiresGrad = requiresGrad
        return t
    }

    /// Values drawn uniformly from [low, high) with a seeded generator.
    public static func uniform(
        _ shape: [Int], low: Float = 0, high: Float = 1,
        using rng: inout SeededGenerator, requiresGrad: Bool = false
    ) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        let p = t.pointer
        for i in 0..<t.count { p[i] = low + (high - low) * rng.nextFloat() }
        t.requiresGrad = requiresGrad
        return t
    }

    // MARK: - Properties

    public var count: Int { Shape.count(shape) }
    public var rank: Int { shape.count }
    public var dtype: DType { storage.dtype }
    public var device: Device { storage.device }
    /// A leaf has no recorded producer: parameters, inputs, and results of no-grad code.
    public var isLeaf: Bool { gradNode == nil }

    /// The first element of this tensor's data.
    public var pointer: UnsafeMutablePointer<Float> {
        precondition(dtype == .float32, "direct float access needs a float32 tensor, this one is \(dtype)")
        return storage.floats + offset
    }

    /// The first element of this tensor's data, untyped (any dtype): what kernels hand to oneDNN.
    public var raw: UnsafeMutableRawPointer { storage.pointer + offset * dtype.byteSize }

    /// A copy of the values in row-major order (bfloat16 widened to float).
    public func toArray() -> [Float] {
        switch dtype {
        case .float32: return Array(UnsafeBufferPointer(start: pointer, count: count))
        case .bfloat16:
            let bits = raw.assumingMemoryBound(to: UInt16.self)
            return (0..<count).map { BFloat16.float(bits[$0]) }
        }
    }

    /// False when an element is NaN or infinite, or so large (> 1.8e19) that its square overflows float32: no usable
    /// weight is (checked before weights are saved and after they are loaded). Through the backend's sum of squares.
    public var isAllFinite: Bool { device.backend.sumOfSquares(self).isFinite }

    /// The value of a one-element tensor.
    public func item() -> Float {
        precondition(count == 1, "item() needs a one-element tensor, shape is \(shape)")
        return toArray()[0]
    }

    /// The size of an axis (negative axes count from the end).
    public func size(_ axis: Int) -> Int { shape[Shape.axis(axis, rank: rank)] }

    // MARK: - Views

    /// The same data with another shape of equal element count; one size may be -1 (inferred). Shares storage.
    public func reshape(_ newShape: [Int]) -> Tensor {
        var newShape = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) into \(newShape)")
            newShape[inferred] = count / known
        }
        precondition(Shape.count(newShape) == count, "cannot reshape \(shape) (\(count) values) into \(newShape)")
        let out = Tensor(shape: newShape, storage: storage, offset: offset)
        let inputShape = shape
        return record(out, inputs: [self], "reshape") { g in [g.reshape(inputShape)] }
    }

    /// All axes from `startAxis` on merged into one.
    public func flatten(from startAxis: Int = 0) -> Tensor {
        let a = Shape.axis(startAxis, rank: Swift.max(rank, 1))
        return reshape(Array(shape[..<a]) + [shape[a...].reduce(1, *)])
    }

    /// This tensor's data, cut from the graph: no gradient flows back through the result. Shares storage.
    public func detach() -> Tensor { Tensor(shape: shape, storage: storage, offset: offset) }

    /// A new tensor with a copy of this one's values (same dtype), cut from the graph.
    public func copy() -> Tensor {
        let out = Tensor(uninitializedShape: shape, dtype: dtype, device: device)
        out.raw.copyMemory(from: raw, byteCount: count * dtype.byteSize)
        return out
    }

    /// Marks this tensor as a weight that will not change (inference): matmuls may pack it once. Changing its
    /// values through `assign`, `convert` or an optimiser's backend kernel unfreezes it and drops the packs.
    public func freezeForInference() { isFrozenForInference = true }

    /// Forgets the frozen mark and every packed copy (the values are about to change).
    public func thaw() {
        isFrozenForInference = false
        packedCopies.removeAll()
        quantized = nil
    }

    /// Converts this tensor's own values to `dtype`, in place: it gets new storage (views of the old one keep the
    /// old values). For weights converted once at load, as bf16 inference does; not for tensors in a graph.
    public func convert(to dtype: DType) {
        guard dtype != self.dtype else { return }
        precondition(gradNode == nil, "convert(to:) on a tensor recorded in a graph; use cast(to:)")
        let converted = self.converted(to: dtype)
        thaw()
        storage = converted.storage
        offset = 0
        grad = nil
    }

    /// Takes `source`'s storage (and so its values and dtype) instead of copying them: for a checkpoint's tensors,
    /// which nothing else holds, so that loading costs the weights once. Shapes must match.
    public func adopt(_ source: Tensor) {
        precondition(source.shape == shape, "cannot adopt \(source.shape) as \(shape)")
        precondition(gradNode == nil, "adopt(_:) on a tensor recorded in a graph")
        thaw()
        storage = source.storage
        offset = source.offset
        grad = nil
    }

    /// Overwrites this tensor's values with `source`'s (same element count), in place and unrecorded, converting
    /// the dtype if they differ. Used to load weights and by optimisers.
    public func assign(_ source: Tensor) {
        precondition(source.count == count, "cannot assign \(source.shape) to \(shape)")
        if source.storage === storage && source.offset == offset { return }
        thaw()
        if source.dtype == dtype {
            raw.copyMemory(from: source.raw, byteCount: count * dtype.byteSize)
        } else {
            device.backend.cast(source.rawView(shape), into: self)
        }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let values = toArray()
        let shown = values.prefix(8).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(values.count > 8 ? ", ..." : "")])"
    }
}
