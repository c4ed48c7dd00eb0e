import Foundation
import Images
import Tensors

/// How a data set's images are brought to the size a model takes, once, when they are loaded (the 8-bit copies
/// in memory are already at that size).
public enum ImageSizing: Sendable, Equatable {
    /// timm's evaluation transform on one image: the shorter side to floor(size / cropPct) with Pillow-exact
    /// resampling, then the centre size x size.
    public struct Resize: Sendable, Equatable {
        public var size: Int
        public var cropPct: Float
        public var filter: Resampling.Filter

        public init(size: Int, cropPct: Float = 1, filter: Resampling.Filter = .bicubic) {
            precondition(size > 0 && cropPct > 0, "resize to \(size) px with crop \(cropPct)")  // as EvalTransform
            self.size = size
            self.cropPct = cropPct
            self.filter = filter
        }

        public func apply(_ image: RGBImage) -> RGBImage {
            EvalTransform(size: size, cropPct: cropPct, filter: filter).crop(image)
        }
    }

    /// Keep the images as they are; they must all share one size (images of another size are skipped).
    case native
    /// Every image resized and cropped.
    case resize(Resize)
    /// The images as they are when all share one square size, else every image resized to `fallback` px
    /// (what `vit train` does without `--image-size`: CIFAR stays 32 px, a folder of photos becomes the preset's size).
    case nativeIfUniform(fallback: Int)

    public static func size(_ size: Int, cropPct: Float = 1) -> ImageSizing { .resize(Resize(size: size, cropPct: cropPct)) }
}
