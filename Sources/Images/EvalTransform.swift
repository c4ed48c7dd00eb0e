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

    /// The resized and cropped 8-bit image, before normalisation. Only the crop is computed (see
    /// `PILResize.resize(region:)`), so its cost is bounded by the crop and the input, never by the resized image.
    public func crop(_ image: RGBImage) -> RGBImage {
        let scaleSize = Int((Double(size) / Double(cropPct)).rounded(.down))
        let (short, long) = (min(image.width, image.height), max(image.width, image.height))
        // In Double: an extreme aspect ratio times a large size may exceed Int's range before the crop bounds it.
        let newLong = (Double(scaleSize) * Double(long) / Double(short)).rounded(.towardZero)
        let (w, h) = image.width <= image.height ? (Double(scaleSize), newLong) : (newLong, Double(scaleSize))
        let top = ((h - Double(size)) / 2).rounded(.toNearestOrEven)
        let left = ((w - Double(size)) / 2).rounded(.toNearestOrEven)
        precondition(top >= 0 && left >= 0, "resized image \(w)x\(h) is smaller than the crop \(size)")
        if Int(exactly: w) == image.width && Int(exactly: h) == image.height {
            return image.cropped(left: Int(left), top: Int(top), width: size, height: size)
        }
        return PILResize.resize(
            image, width: Int(w), height: Int(h), filter: filter,
            region: PILResize.Region(left: Int(left), top: Int(top), width: size, height: size))
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
