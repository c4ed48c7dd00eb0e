import Tensors

/// Resizing 8-bit images exactly as Pillow's `Image.resize` does: separable (horizontal pass, then vertical),
/// antialiased (the filter widens by the scale factor when shrinking), with weights in 22-bit fixed point and each
/// pass rounded and clamped to 8 bits.
public enum PILResize {
    static let precisionBits = 32 - 8 - 2

    /// Fixed-point weights for the output indices `outputs` of one axis, from the shared antialiased filter weights.
    static func fixedPointWeights(
        inputSize: Int, outputSize: Int, filter: Resampling.Filter, outputs: Range<Int>
    ) -> [(start: Int, weights: [Int32])] {
        Resampling.weights(inputSize: inputSize, outputSize: outputSize, filter: filter, outputs: outputs).map { start, weights in
            (
                start,
                weights.map { w in
                    let scaled = w * Double(1 << precisionBits)
                    return Int32(scaled < 0 ? Int(-0.5 + scaled) : Int(0.5 + scaled))  // C's (int) truncation, as Pillow
                }
            )
        }
    }

    /// One axis's weights in one array, `stride` per output (zero past each output's `counts`), so the horizontal
    /// pass reads them without an array per pixel.
    struct FlatWeights {
        let starts: [Int], counts: [Int], coefficients: [Int32], stride: Int
        init(_ table: [(start: Int, weights: [Int32])]) {
            let stride = table.map(\.weights.count).max() ?? 0
            starts = table.map(\.start)
            counts = table.map(\.weights.count)
            coefficients = table.flatMap { $0.weights + [Int32](repeating: 0, count: stride - $0.weights.count) }
            self.stride = stride
        }
    }

    @inline(__always) static func clip8(_ value: Int32) -> UInt8 {
        let shifted = value >> Int32(precisionBits)
        return UInt8(clamping: shifted)
    }

    /// A region of the resized image, [left, left + width) x [top, top + height).
    public struct Region: Sendable, Equatable {
        public var left, top, width, height: Int
        public init(left: Int, top: Int, width: Int, height: Int) {
            (self.left, self.top, self.width, self.height) = (left, top, width, height)
        }
    }

    /// The image resized to `newWidth` x `newHeight`, or only `region` of it: the same pixels as resizing and then
    /// cropping, but computed for the region alone, so a crop of an extreme resize (a 1 x 1,000,000 strip, a tiny
    /// crop_pct) never holds the whole resized image. As Pillow, the horizontal pass runs first, on the input rows
    /// the vertical pass will read.
    public static func resize(
        _ image: RGBImage, width newWidth: Int, height newHeight: Int, filter: Resampling.Filter, region: Region? = nil
    ) -> RGBImage {
        let region = region ?? Region(left: 0, top: 0, width: newWidth, height: newHeight)
        precondition(
            region.left >= 0 && region.top >= 0 && region.width > 0 && region.height > 0
                && region.left + region.width <= newWidth && region.top + region.height <= newHeight,
            "region \(region) is outside \(newWidth)x\(newHeight)")
        let columns = region.left..<(region.left + region.width), rows = region.top..<(region.top + region.height)
        // The vertical pass's weights, and the input rows they read: [firstRow, endRow).
        let vertical =
            newHeight == image.height
            ? nil : fixedPointWeights(inputSize: image.height, outputSize: newHeight, filter: filter, outputs: rows)
        let firstRow = vertical?.map(\.start).min() ?? rows.lowerBound
        let endRow = vertical?.map { $0.start + $0.weights.count }.max() ?? rows.upperBound
        // Horizontal pass: input rows [firstRow, endRow) -> the region's columns.
        let w = region.width, passRows = endRow - firstRow
        var horizontal = [UInt8](repeating: 0, count: w * passRows * 3)
        image.pixels.withUnsafeBufferPointer { src in
            horizontal.withUnsafeMutableBufferPointer { dst in
                if newWidth == image.width {
                    for y in 0..<passRows {
                        let s = ((firstRow + y) * image.width + region.left) * 3
                        for i in 0..<(w * 3) { dst[y * w * 3 + i] = src[s + i] }
                    }
                    return
                }
                let table = FlatWeights(fixedPointWeights(inputSize: image.width, outputSize: newWidth, filter: filter, outputs: columns))
                table.coefficients.withUnsafeBufferPointer { coefficients in
                    for y in 0..<passRows {
                        let row = (firstRow + y) * image.width * 3
                        for x in 0..<w {
                            var r: Int32 = 1 << Int32(precisionBits - 1), g = r, b = r
                            let weights = coefficients.baseAddress! + x * table.stride
                            var s = row + table.starts[x] * 3
                            for j in 0..<table.counts[x] {
                                let weight = weights[j]
                                r &+= Int32(src[s]) &* weight
                                g &+= Int32(src[s + 1]) &* weight
                                b &+= Int32(src[s + 2]) &* weight
                                s += 3
                            }
                            let d = (y * w + x) * 3
                            dst[d] = clip8(r)
                            dst[d + 1] = clip8(g)
                            dst[d + 2] = clip8(b)
                        }
                    }
                }
            }
        }
        guard let vertical else { return RGBImage(width: w, height: passRows, pixels: horizontal) }
        // Vertical pass: the region's rows. Each output row sums whole input rows (the same integer sums as Pillow's
        // column by column, in another order: integer addition does not care), so the inner loop runs along a row.
        var out = [UInt8](repeating: 0, count: w * region.height * 3)
        var sums = [Int32](repeating: 0, count: w * 3)
        horizontal.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                sums.withUnsafeMutableBufferPointer { sums in
                    for (y, (start, weights)) in vertical.enumerated() {
                        for i in 0..<(w * 3) { sums[i] = 1 << Int32(precisionBits - 1) }
                        for (j, weight) in weights.enumerated() {
                            let row = (start - firstRow + j) * w * 3
                            for i in 0..<(w * 3) { sums[i] &+= Int32(src[row + i]) &* weight }
                        }
                        for i in 0..<(w * 3) { dst[y * w * 3 + i] = clip8(sums[i]) }
                    }
                }
            }
        }
        return RGBImage(width: w, height: region.height, pixels: out)
    }
}
