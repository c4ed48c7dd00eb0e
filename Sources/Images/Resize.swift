import Tensors

/// Resizing 8-bit images exactly as Pillow's `Image.resize` does: separable (horizontal pass, then vertical),
/// antialiased (the filter widens by the scale factor when shrinking), with weights in 22-bit fixed point and each
/// pass rounded and clamped to 8 bits.
public enum PILResize {
    static let precisionBits = 32 - 8 - 2

    /// Fixed-point weights for one axis, from the shared antialiased filter weights.
    static func fixedPointWeights(inputSize: Int, outputSize: Int, filter: Resampling.Filter) -> [(start: Int, weights: [Int32])] {
        Resampling.weights(inputSize: inputSize, outputSize: outputSize, filter: filter).map { start, weights in
            (
                start,
                weights.map { w in
                    let scaled = w * Double(1 << precisionBits)
                    return Int32(scaled < 0 ? Int(-0.5 + scaled) : Int(0.5 + scaled))  // C's (int) truncation, as Pillow
                }
            )
        }
    }

    @inline(__always) static func clip8(_ value: Int32) -> UInt8 {
        let shifted = value >> Int32(precisionBits)
        return UInt8(clamping: shifted)
    }

    public static func resize(
        _ image: RGBImage, width newWidth: Int, height newHeight: Int,
        filter: Resampling.Filter
    ) -> RGBImage {
        var current = image
        if newWidth != image.width {
            let table = fixedPointWeights(inputSize: image.width, outputSize: newWidth, filter: filter)
            var out = [UInt8](repeating: 0, count: newWidth * image.height * 3)
            current.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<image.height {
                        let row = y * image.width * 3
                        for (x, (start, weights)) in table.enumerated() {
                            var r: Int32 = 1 << Int32(precisionBits - 1), g = r, b = r
                            for (j, w) in weights.enumerated() {
                                let s = row + (start + j) * 3
                                r &+= Int32(src[s]) &* w; g &+= Int32(src[s + 1]) &* w; b &+= Int32(src[s + 2]) &* w
                            }
                            let d = (y * newWidth + x) * 3
                            dst[d] = clip8(r); dst[d + 1] = clip8(g); dst[d + 2] = clip8(b)
                        }
                    }
                }
            }
            current = RGBImage(width: newWidth, height: image.height, pixels: out)
        }
        if newHeight != image.height {
            let table = fixedPointWeights(inputSize: image.height, outputSize: newHeight, filter: filter)
            let w = current.width
            var out = [UInt8](repeating: 0, count: w * newHeight * 3)
            current.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for (y, (start, weights)) in table.enumerated() {
                        for i in 0..<(w * 3) {
                            var sum: Int32 = 1 << Int32(precisionBits - 1)
                            for (j, weight) in weights.enumerated() { sum &+= Int32(src[(start + j) * w * 3 + i]) &* weight }
                            dst[y * w * 3 + i] = clip8(sum)
                        }
                    }
                }
            }
            current = RGBImage(width: w, height: newHeight, pixels: out)
        }
        return current
    }
}
