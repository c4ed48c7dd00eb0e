import Foundation
import Images
import Tensors

/// Training-time augmentation of one 8-bit image, as torchvision/timm do it for small images: random crop with
/// padding, horizontal flip and RandAugment. (Random erasing works on the normalised batch, mixup and cutmix on
/// pairs of images: see `BatchMixing`.)
public struct Augmentation: Codable, Equatable, Sendable {
    /// Zero padding on every side before a random crop back to the original size (torchvision
    /// `RandomCrop(size, padding)`); 0 turns the crop off.
    public var cropPadding = 4
    public var horizontalFlip = true
    /// RandAugment: `randAugmentOps` operations per image, each at magnitude `randAugmentMagnitude` of 10
    /// (timm `rand-m{M}-n{N}`); 0 ops turns it off.
    public var randAugmentOps = 0
    public var randAugmentMagnitude: Float = 9
    /// Probability that a batch image gets a random rectangle of normal noise (timm `RandomErasing`, pixel mode).
    public var randomErasing: Float = 0
    /// Random resized crop (torchvision `RandomResizedCrop`, bicubic, as MAE pre-trains): a window of this range
    /// of the image's area and an aspect ratio in [3/4, 4/3], resized back to the image's size; nil turns it off.
    public var resizedCropScale: [Float]?

    public init() {}

    /// No augmentation at all (evaluation).
    public static let none: Augmentation = {
        var a = Augmentation()
        a.cropPadding = 0
        a.horizontalFlip = false
        return a
    }()

    /// The augmented copy of `image`.
    public func apply(_ image: RGBImage, using rng: inout SeededGenerator) -> RGBImage {
        var out = image
        if randAugmentOps > 0 { out = RandAugment(ops: randAugmentOps, magnitude: randAugmentMagnitude).apply(out, using: &rng) }
        if let scale = resizedCropScale, scale.count == 2 { out = Self.randomResizedCrop(out, scale: (scale[0], scale[1]), using: &rng) }
        if cropPadding > 0 { out = Self.randomCrop(out, padding: cropPadding, using: &rng) }
        if horizontalFlip && rng.nextFloat() < 0.5 { out = Self.flipHorizontally(out) }
        return out
    }

    /// Pads with zeros by `padding` on each side and crops a random window of the original size.
    static func randomCrop(_ image: RGBImage, padding: Int, using rng: inout SeededGenerator) -> RGBImage {
        let (w, h) = (image.width, image.height)
        let dx = Int(rng.next() % UInt64(2 * padding + 1)) - padding  // window origin in the unpadded image
        let dy = Int(rng.next() % UInt64(2 * padding + 1)) - padding
        var out = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            let sy = y + dy
            guard sy >= 0 && sy < h else { continue }
            let x0 = max(0, -dx), x1 = min(w, w - dx)  // output columns inside the image
            guard x1 > x0 else { continue }
            let source = (sy * w + x0 + dx) * 3, target = (y * w + x0) * 3
            out.withUnsafeMutableBufferPointer { o in
                image.pixels.withUnsafeBufferPointer { p in
                    (o.baseAddress! + target).update(from: p.baseAddress! + source, count: (x1 - x0) * 3)
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }

    /// torchvision's `RandomResizedCrop.get_params`: up to 10 tries of an area fraction uniform in `scale` and a
    /// log-uniform aspect ratio in [3/4, 4/3], placed uniformly; if none fits, the central crop of the nearest
    /// allowed ratio. The window is resized to the image's size (bicubic, Pillow's).
    static func randomResizedCrop(_ image: RGBImage, scale: (Float, Float), using rng: inout SeededGenerator) -> RGBImage {
        let (w, h) = (image.width, image.height)
        let area = Double(w * h), logRatio = (Foundation.log(3.0 / 4.0), Foundation.log(4.0 / 3.0))
        var window: (x: Int, y: Int, w: Int, h: Int)?
        for _ in 0..<10 {
            let target = area * (Double(scale.0) + Double(scale.1 - scale.0) * rng.nextDouble())
            let ratio = Foundation.exp(logRatio.0 + (logRatio.1 - logRatio.0) * rng.nextDouble())
            let cw = Int((target * ratio).squareRoot().rounded()), ch = Int((target / ratio).squareRoot().rounded())
            if cw > 0 && cw <= w && ch > 0 && ch <= h {
                let y = Int(rng.next() % UInt64(h - ch + 1)), x = Int(rng.next() % UInt64(w - cw + 1))
                window = (x, y, cw, ch)
                break
            }
        }
        if window == nil {
            let ratio = Double(w) / Double(h)
            var (cw, ch) = (w, h)
            if ratio < 3.0 / 4.0 {
                ch = Int((Double(w) / (3.0 / 4.0)).rounded())
            } else if ratio > 4.0 / 3.0 {
                cw = Int((Double(h) * 4.0 / 3.0).rounded())
            }
            window = ((w - cw) / 2, (h - ch) / 2, cw, ch)
        }
        let crop = window!
        var pixels = [UInt8](repeating: 0, count: crop.w * crop.h * 3)
        for row in 0..<crop.h {
            let source = ((crop.y + row) * w + crop.x) * 3
            pixels.replaceSubrange((row * crop.w * 3)..<((row + 1) * crop.w * 3), with: image.pixels[source..<(source + crop.w * 3)])
        }
        return PILResize.resize(RGBImage(width: crop.w, height: crop.h, pixels: pixels), width: w, height: h, filter: .bicubic)
    }

    static func flipHorizontally(_ image: RGBImage) -> RGBImage {
        let (w, h) = (image.width, image.height)
        var out = image.pixels
        for y in 0..<h {
            for x in 0..<w {
                let s = (y * w + (w - 1 - x)) * 3, t = (y * w + x) * 3
                out[t] = image.pixels[s]; out[t + 1] = image.pixels[s + 1]; out[t + 2] = image.pixels[s + 2]
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }
}

/// RandAugment (Cubuk et al. 2020) with timm's operation set and magnitude scales (`rand_augment_transform`):
/// each of `ops` operations is drawn uniformly and applied with probability 0.5; signed operations flip their
/// direction half the time. Geometric operations fill with timm's mean colour and sample bilinearly.
public struct RandAugment: Sendable {
    public enum Operation: CaseIterable, Sendable {
        case autoContrast, equalize, invert, rotate, posterize, solarize, solarizeAdd, color, contrast, brightness
        case sharpness, shearX, shearY, translateX, translateY
    }

    public let ops: Int
    public let magnitude: Float
    static let fill: [Float] = [124, 116, 104]  // timm's fill: the ImageNet mean colour

    public init(ops: Int, magnitude: Float) {
        self.ops = ops
        self.magnitude = magnitude
    }

    public func apply(_ image: RGBImage, using rng: inout SeededGenerator) -> RGBImage {
        var out = image
        for _ in 0..<ops {
            let op = Operation.allCases[Int(rng.next() % UInt64(Operation.allCases.count))]
            guard rng.nextFloat() < 0.5 else { continue }
            let sign: Float = rng.nextFloat() < 0.5 ? -1 : 1
            out = Self.apply(op, level: magnitude / 10, sign: sign, to: out)
        }
        return out
    }

    /// `level` is the magnitude as a fraction of the maximum (timm's `_LEVEL_DENOM` = 10).
    public static func apply(_ op: Operation, level: Float, sign: Float, to image: RGBImage) -> RGBImage {
        let (w, h) = (Float(image.width), Float(image.height))
        switch op {
        case .autoContrast: return autoContrast(image)
        case .equalize: return equalize(image)
        case .invert: return mapPixels(image) { 255 - $0 }
        case .posterize:
            let bits = max(1, 8 - Int(level * 4))  // timm "Posterize" (8 .. 4 bits)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            return mapPixels(image) { $0 & mask }
        case .solarize:
            let threshold = Int(256 - level * 256)
            return mapPixels(image) { Int($0) >= threshold ? 255 - $0 : $0 }
        case .solarizeAdd:
            let add = Int(level * 110)
            return mapPixels(image) { $0 < 128 ? UInt8(min(255, Int($0) + add)) : $0 }
        case .color: return blend(image, with: grayscale(image), factor: 1 + sign * level * 0.9)
        case .contrast:
            let gray = grayscale(image)
            let mean = Float(gray.pixels.reduce(0) { $0 + Int($1) }) / Float(gray.pixels.count)
            let flat = RGBImage(
                width: image.width, height: image.height,
                pixels: [UInt8](repeating: UInt8(mean.rounded()), count: image.pixels.count))
            return blend(image, with: flat, factor: 1 + sign * level * 0.9)
        case .brightness:
            return blend(
                image,
                with: RGBImage(
                    width: image.width, height: image.height,
                    pixels: [UInt8](repeating: 0, count: image.pixels.count)),
                factor: 1 + sign * level * 0.9)
        case .sharpness: return blend(image, with: smooth(image), factor: 1 + sign * level * 0.9)
        case .rotate:
            let angle = sign * level * 30 * Float.pi / 180
            let (c, s) = (cos(angle), sin(angle))
            // Output pixel (x, y) samples the input at the inverse rotation about the centre.
            return affine(image, [c, s, (w / 2) * (1 - c) - s * (h / 2), -s, c, (h / 2) * (1 - c) + s * (w / 2)])
        case .shearX: return affine(image, [1, sign * level * 0.3, 0, 0, 1, 0])
        case .shearY: return affine(image, [1, 0, 0, sign * level * 0.3, 1, 0])
        case .translateX: return affine(image, [1, 0, sign * level * 0.45 * w, 0, 1, 0])
        case .translateY: return affine(image, [1, 0, 0, 0, 1, sign * level * 0.45 * h])
        }
    }

    static func mapPixels(_ image: RGBImage, _ f: (UInt8) -> UInt8) -> RGBImage {
        var lut = [UInt8](repeating: 0, count: 256)
        for v in 0..<256 { lut[v] = f(UInt8(v)) }
        return RGBImage(width: image.width, height: image.height, pixels: image.pixels.map { lut[Int($0)] })
    }

    /// PIL's "L" conversion (ITU-R 601-2 luma), replicated to three channels.
    static func grayscale(_ image: RGBImage) -> RGBImage {
        var out = image.pixels
        for i in stride(from: 0, to: out.count, by: 3) {
            let l = (Int(out[i]) * 19595 + Int(out[i + 1]) * 38470 + Int(out[i + 2]) * 7471 + 0x8000) >> 16
            out[i] = UInt8(l); out[i + 1] = UInt8(l); out[i + 2] = UInt8(l)
        }
        return RGBImage(width: image.width, height: image.height, pixels: out)
    }

    /// degenerate + factor · (image - degenerate), clipped (PIL ImageEnhance).
    static func blend(_ image: RGBImage, with degenerate: RGBImage, factor: Float) -> RGBImage {
        var out = image.pixels
        for i in out.indices {
            let v = Float(degenerate.pixels[i]) + factor * (Float(image.pixels[i]) - Float(degenerate.pixels[i]))
            out[i] = UInt8(min(255, max(0, v.rounded())))
        }
        return RGBImage(width: image.width, height: image.height, pixels: out)
    }

    /// PIL's SMOOTH filter (3x3, centre 5, others 1, /13) inside, border pixels unchanged.
    static func smooth(_ image: RGBImage) -> RGBImage {
        let (w, h) = (image.width, image.height)
        var out = image.pixels
        guard w > 2 && h > 2 else { return image }
        for y in 1..<(h - 1) {
            for x in 1..<(w - 1) {
                for c in 0..<3 {
                    var sum = 0
                    for dy in -1...1 { for dx in -1...1 { sum += Int(image.pixels[((y + dy) * w + x + dx) * 3 + c]) } }
                    sum += 4 * Int(image.pixels[(y * w + x) * 3 + c])
                    out[(y * w + x) * 3 + c] = UInt8((sum + 6) / 13)
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }

    /// Stretches each channel so its darkest value is 0 and its brightest 255.
    static func autoContrast(_ image: RGBImage) -> RGBImage {
        var out = image.pixels
        for c in 0..<3 {
            var lo: UInt8 = 255, hi: UInt8 = 0
            for i in stride(from: c, to: out.count, by: 3) { lo = min(lo, out[i]); hi = max(hi, out[i]) }
            guard hi > lo else { continue }
            let scale = 255 / Float(hi - lo)
            for i in stride(from: c, to: out.count, by: 3) { out[i] = UInt8((Float(out[i] - lo) * scale).rounded()) }
        }
        return RGBImage(width: image.width, height: image.height, pixels: out)
    }

    /// Histogram equalisation per channel (PIL ImageOps.equalize).
    static func equalize(_ image: RGBImage) -> RGBImage {
        var out = image.pixels
        for c in 0..<3 {
            var histogram = [Int](repeating: 0, count: 256)
            for i in stride(from: c, to: out.count, by: 3) { histogram[Int(out[i])] += 1 }
            let nonZero = histogram.filter { $0 > 0 }
            guard nonZero.count > 1 else { continue }
            let step = (nonZero.reduce(0, +) - nonZero.last!) / 255
            guard step > 0 else { continue }
            var lut = [UInt8](repeating: 0, count: 256)
            var n = step / 2
            for v in 0..<256 { lut[v] = UInt8(min(255, n / step)); n += histogram[v] }
            for i in stride(from: c, to: out.count, by: 3) { out[i] = lut[Int(out[i])] }
        }
        return RGBImage(width: image.width, height: image.height, pixels: out)
    }

    /// Output (x, y) samples the input at (a·x + b·y + c, d·x + e·y + f) (PIL's affine coefficients), bilinearly,
    /// with the fill colour outside.
    static func affine(_ image: RGBImage, _ m: [Float]) -> RGBImage {
        let (w, h) = (image.width, image.height)
        var out = [UInt8](repeating: 0, count: w * h * 3)
        func source(_ x: Int, _ y: Int, _ c: Int) -> Float {
            x >= 0 && x < w && y >= 0 && y < h ? Float(image.pixels[(y * w + x) * 3 + c]) : fill[c]
        }
        for y in 0..<h {
            for x in 0..<w {
                // Pixel centres, as PIL's transform samples them.
                let (px, py) = (Float(x) + 0.5, Float(y) + 0.5)
                let sx = m[0] * px + m[1] * py + m[2] - 0.5, sy = m[3] * px + m[4] * py + m[5] - 0.5
                let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down))
                let fx = sx - Float(x0), fy = sy - Float(y0)
                for c in 0..<3 {
                    let top = source(x0, y0, c) * (1 - fx) + source(x0 + 1, y0, c) * fx
                    let bottom = source(x0, y0 + 1, c) * (1 - fx) + source(x0 + 1, y0 + 1, c) * fx
                    out[(y * w + x) * 3 + c] = UInt8(min(255, max(0, (top * (1 - fy) + bottom * fy).rounded())))
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }
}
