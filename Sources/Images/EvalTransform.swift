import Foundation
import Tensors

/// timm's evaluation transform (`create_transform(is_training=False)`) on a decoded image: resize the shorter side
/// to floor(size / crop_pct) keeping the aspect ratio (the longer side truncated, as torchvision does), center-crop
/// size x size (offsets rounded half to even, as Python's round), scale to [0, 1], normalise, CHW float32.
public struct EvalTransform: Sendable {
    public var size: Int
    public var cropPct: Float
    public var filter: Resampling.Filter
    public var mean: [Float]
    public var std: [Float]

    public init(
        size: Int, cropPct: Float = 1, filter: Resampling.Filter = .bicubic,
        mean: [Float] = [0.5, 0.5, 0.5], std: [Float] = [0.5, 0.5, 0.5]
    ) {
        precondition(size > 0 && cropPct > 0 && mean.count == 3 && std.count == 3, "invalid transform settings")
        self.size = size
        self.cropPct = cropPct
        self.filter = filter
        self.mean = mean
        self.std = std
    }

    /// The resized and cropped 8-bit image, before normalisation.
    public func crop(_ image: RGBImage) -> RGBImage {
        let scaleSize = Int((Double(size) / Double(cropPct)).rounded(.down))
        let (short, long) = (min(image.width, image.height), max(image.width, image.height))
        let newLong = Int(Double(scaleSize) * Double(long) / Double(short))
        let (w, h) = image.width <= image.height ? (scaleSize, newLong) : (newLong, scaleSize)
        let resized = (w == image.width && h == image.height) ? image : PILResize.resize(image, width: w, height: h, filter: filter)
        let top = Int((Double(resized.height - size) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(resized.width - size) / 2).rounded(.toNearestOrEven))
        precondition(top >= 0 && left >= 0, "resized image \(resized.width)x\(resized.height) is smaller than the crop \(size)")
        return resized.cropped(left: left, top: top, width: size, height: size)
    }

    /// image -> [3, size, size], normalised.
    public func callAsFunction(_ image: RGBImage) -> Tensor {
        let cropped = crop(image)
        let out = Tensor(uninitializedShape: [3, size, size])
        let plane = size * size
        let p = out.pointer
        cropped.pixels.withUnsafeBufferPointer { src in
            for c in 0..<3 {
                let scale = 1 / (255 * std[c]), shift = -mean[c] / std[c]
                for i in 0..<plane { p[c * plane + i] = Float(src[i * 3 + c]) * scale + shift }
            }
        }
        return out
    }
}
