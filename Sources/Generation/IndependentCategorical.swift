import Foundation

/// The sanity line an image model must beat: every sub-pixel position its own categorical over 0...255, fitted to
/// the training images by counting (add-one smoothing, so no test value has probability 0), blind to every other
/// position. Its bits per dimension on test images is what knowing the average image is worth.
public struct IndependentCategorical: Sendable {
    /// counts[p · 256 + v]: how often position p holds v in the training images, plus one.
    public private(set) var counts: [Double]
    public private(set) var images = 0
    public let length: Int

    public init(length: Int) {
        self.length = length
        counts = [Double](repeating: 1, count: length * 256)
    }

    /// Adds images (each `length` sub-pixels) to the counts.
    public mutating func fit(_ subpixels: [UInt8]) {
        precondition(subpixels.count % length == 0, "sub-pixels of whole images")
        for (i, v) in subpixels.enumerated() { counts[(i % length) * 256 + Int(v)] += 1 }
        images += subpixels.count / length
    }

    /// The mean negative log-likelihood of `subpixels` (whole images), in bits per sub-pixel.
    public func bitsPerDimension(_ subpixels: [UInt8]) -> Double {
        let total = Double(images + 256)  // each position's counts sum to the images plus the 256 added ones
        var bits = 0.0
        for (i, v) in subpixels.enumerated() { bits -= log2(counts[(i % length) * 256 + Int(v)] / total) }
        return bits / Double(max(subpixels.count, 1))
    }
}
