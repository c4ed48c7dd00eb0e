/// Masks and choices: where, masked fill, one-hot, dropout.

extension Tensor {
    /// `a` where `condition` is 1 and `b` where it is 0 (condition holds 0s and 1s; all three broadcast).
    /// Computed as b + condition * (a - b), so gradients reach both sides through the mask.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        b + condition * (a - b)
    }

    /// `value` where `mask` is 1, self elsewhere; the gradient passes where the mask is 0.
    public func maskedFill(_ mask: Tensor, value: Float) -> Tensor {
        self * (1 - mask) + mask * value
    }

    /// Rows of zeros with a 1 at each index: [indices.count, classes].
    public static func oneHot(_ indices: [Int], classes: Int) -> Tensor {
        let out = Tensor.zeros([indices.count, classes])
        let p = out.pointer
        for (row, index) in indices.enumerated() {
            precondition(index >= 0 && index < classes, "one-hot index \(index) outside 0..<\(classes)")
            p[row * classes + index] = 1
        }
        return out
    }

    /// Inverted dropout: zeroes each value with probability `p` and scales the rest by 1/(1-p), so the expectation
    /// is unchanged. Seeded through `rng`.
    public func dropout(_ p: Float, using rng: inout SeededGenerator) -> Tensor {
        precondition(p >= 0 && p < 1, "dropout probability \(p) must be in [0, 1)")
        if p == 0 { return self }
        let mask = Tensor(uninitializedShape: shape)
        let keep = 1 - p, scale = 1 / keep
        let m = mask.pointer
        for i in 0..<count { m[i] = rng.nextFloat() < keep ? scale : 0 }
        return self * (dtype == .float32 ? mask : mask.converted(to: dtype))  // in this tensor's dtype, as PyTorch draws it
    }
}
