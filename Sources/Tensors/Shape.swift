/// Shape arithmetic shared by the ops: strides, broadcasting, axis normalisation.
public enum Shape {
    /// Row-major strides (in elements) of a contiguous tensor of this shape.
    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = running
            running *= shape[i]
        }
        return strides
    }

    public static func count(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    /// The element count of a shape read from a file: nil when a dimension is negative or the product overflows.
    public static func checkedCount(_ shape: [Int]) -> Int? {
        var count = 1
        for size in shape {
            guard size >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// NumPy broadcasting: align from the right; each pair of sizes must be equal or one of them 1.
    public static func broadcast(_ a: [Int], _ b: [Int]) -> [Int] {
        let rank = max(a.count, b.count)
        let a = padded(a, to: rank), b = padded(b, to: rank)
        return (0..<rank).map { i in
            if a[i] == b[i] || b[i] == 1 { return a[i] }
            if a[i] == 1 { return b[i] }
            preconditionFailure("shapes \(a) and \(b) do not broadcast (axis \(i): \(a[i]) vs \(b[i]))")
        }
    }

    /// Prepends 1s so the shape has `rank` axes.
    public static func padded(_ shape: [Int], to rank: Int) -> [Int] {
        precondition(shape.count <= rank, "shape \(shape) has more than \(rank) axes")
        return [Int](repeating: 1, count: rank - shape.count) + shape
    }

    /// Turns a possibly negative axis into 0..<rank.
    public static func axis(_ axis: Int, rank: Int) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < rank, "axis \(axis) is out of range for rank \(rank)")
        return a
    }
}
