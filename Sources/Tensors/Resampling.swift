/// Separable, antialiased resampling as PIL's `Image.resize` and PyTorch's `interpolate(..., antialias=True)`
/// compute it (align_corners = false): each output sample is a normalised weighted sum of the input samples under
/// the filter, whose support widens by the scale factor when shrinking so that every input sample contributes.
public enum Resampling {
    public enum Filter: String, Sendable, CaseIterable {
        case bilinear, bicubic

        /// Half-width of the filter at scale 1.
        var support: Double { self == .bilinear ? 1 : 2 }

        func weight(_ x: Double) -> Double {
            let x = abs(x)
            switch self {
            case .bilinear:
                return x < 1 ? 1 - x : 0
            case .bicubic:
                // Keys' cubic with a = -0.5 (PIL, and PyTorch's antialiased path).
                let a = -0.5
                if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
                if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
                return 0
            }
        }
    }

    /// For one axis: each output index's first input index and the normalised weights from there on, for the output
    /// indices `outputs` (default: all of them; a crop needs only its own, however large the whole output would be).
    public static func weights(
        inputSize: Int, outputSize: Int, filter: Filter, outputs: Range<Int>? = nil
    ) -> [(start: Int, weights: [Double])] {
        precondition(inputSize > 0 && outputSize > 0, "resampling needs positive sizes")
        let scale = Double(inputSize) / Double(outputSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        return (outputs ?? 0..<outputSize).map { i in
            let center = scale * (Double(i) + 0.5)
            let lo = max(Int(center - support + 0.5), 0)
            let end = min(Int(center + support + 0.5), inputSize)
            var w = (lo..<max(end, lo)).map { j in filter.weight((Double(j) - center + 0.5) / filterScale) }
            let total = w.reduce(0, +)
            if total != 0 { w = w.map { $0 / total } }
            return (lo, w)
        }
    }

    /// Resamples a channels-last grid [height, width, channels] to [newHeight, newWidth, channels]
    /// (horizontal pass, then vertical), in double precision.
    public static func resample(
        _ values: [Float], height: Int, width: Int, channels: Int,
        newHeight: Int, newWidth: Int, filter: Filter
    ) -> [Float] {
        precondition(values.count == height * width * channels, "grid has \(values.count) values, not \(height)x\(width)x\(channels)")
        let horizontal = weights(inputSize: width, outputSize: newWidth, filter: filter)
        var rows = [Double](repeating: 0, count: height * newWidth * channels)
        for y in 0..<height {
            for (x, (start, w)) in horizontal.enumerated() {
                let out = (y * newWidth + x) * channels
                for (j, wj) in w.enumerated() {
                    let src = (y * width + start + j) * channels
                    for c in 0..<channels { rows[out + c] += wj * Double(values[src + c]) }
                }
            }
        }
        let vertical = weights(inputSize: height, outputSize: newHeight, filter: filter)
        var result = [Float](repeating: 0, count: newHeight * newWidth * channels)
        for (y, (start, w)) in vertical.enumerated() {
            for x in 0..<newWidth {
                let out = (y * newWidth + x) * channels
                for c in 0..<channels {
                    var sum = 0.0
                    for (j, wj) in w.enumerated() { sum += wj * rows[((start + j) * newWidth + x) * channels + c] }
                    result[out + c] = Float(sum)
                }
            }
        }
        return result
    }
}
