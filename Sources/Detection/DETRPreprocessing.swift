import Foundation
import Images
import Tensors

/// DETR's image processing (`DetrImageProcessor`): each image resized (Pillow's bilinear) so that its shorter side
/// is `shortestEdge` unless its longer would then pass `longestEdge`, scaled to [0, 1], normalised with the mean and
/// std, and the batch padded bottom and right with zeros to its largest height and width, with a mask of where each
/// image is.
public struct DETRPreprocessing: Sendable {
    public var shortestEdge: Int
    public var longestEdge: Int
    public var mean: [Float]
    public var std: [Float]

    public init(_ config: DETRConfig) {
        (shortestEdge, longestEdge, mean, std) = (config.shortestEdge, config.longestEdge, config.mean, config.std)
    }

    /// The size an image of `height` x `width` is resized to (transformers' `get_size_with_aspect_ratio`, to the
    /// pixel: its rounding and truncations included).
    public func resizedSize(height: Int, width: Int) -> (height: Int, width: Int) {
        var size = shortestEdge
        var raw: Double?
        let (short, long) = (Double(min(height, width)), Double(max(height, width)))
        if long / short * Double(size) > Double(longestEdge) {
            raw = Double(longestEdge) * short / long
            size = Int((raw ?? 0).rounded(.toNearestOrEven))
        }
        if (height <= width && height == size) || (width <= height && width == size) { return (height, width) }
        if width < height { return (Int((raw ?? Double(size)) * Double(height) / Double(width)), size) }
        return (size, Int((raw ?? Double(size)) * Double(width) / Double(height)))
    }

    /// A batch: pixel values [B, 3, H, W], the mask [B][H][W] (true on each image), and each image's resized size.
    public func callAsFunction(_ images: [RGBImage]) -> (pixels: Tensor, mask: [[[Bool]]], sizes: [(height: Int, width: Int)]) {
        let resized = images.map { image -> RGBImage in
            let (h, w) = resizedSize(height: image.height, width: image.width)
            return (h, w) == (image.height, image.width) ? image : PILResize.resize(image, width: w, height: h, filter: .bilinear)
        }
        let height = resized.map(\.height).max() ?? 0, width = resized.map(\.width).max() ?? 0
        var values = [Float](repeating: 0, count: images.count * 3 * height * width)
        var mask = [[[Bool]]](repeating: [[Bool]](repeating: [Bool](repeating: false, count: width), count: height), count: images.count)
        for (n, image) in resized.enumerated() {
            for y in 0..<image.height {
                for x in 0..<image.width {
                    mask[n][y][x] = true
                    for c in 0..<3 {
                        let v = Float(image.pixels[(y * image.width + x) * 3 + c]) / 255
                        values[((n * 3 + c) * height + y) * width + x] = (v - mean[c]) / std[c]
                    }
                }
            }
        }
        return (Tensor(values, shape: [images.count, 3, height, width]), mask, resized.map { ($0.height, $0.width) })
    }
}
