import CImageCodecs
import Foundation
import Tensors

/// An 8-bit RGB image, pixels interleaved row by row (HWC), as decoders produce and PIL's "RGB" mode holds.
public struct RGBImage: Sendable {
    public let width: Int
    public let height: Int
    /// width · height · 3 bytes.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "\(pixels.count) bytes for a \(width)x\(height) RGB image")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Decodes a JPEG or PNG file (recognised by its first bytes, not its name). JPEG EXIF orientation is applied.
    /// The picture a normalised image [1, 3, H, W] (or [3, H, W]) shows: x · std + mean, scaled to bytes and
    /// clamped.
    public init(normalised image: Tensor, mean: [Float], std: [Float]) {
        let shape = Array(image.shape.suffix(3))
        precondition(shape.count == 3 && shape[0] == 3 && image.count == 3 * shape[1] * shape[2], "not one RGB image: \(image.shape)")
        let (h, w) = (shape[1], shape[2])
        let values = image.toArray()
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for c in 0..<3 {
            for k in 0..<(w * h) {
                let v = (values[c * w * h + k] * std[c] + mean[c]) * 255
                pixels[k * 3 + c] = UInt8(min(max(v.rounded(), 0), 255))
            }
        }
        self.init(width: w, height: h, pixels: pixels)
    }

    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw ImageError(
                url, FileManager.default.fileExists(atPath: url.path) ? "cannot be read: \(error.localizedDescription)" : "no such file")
        }
        try self.init(data: data, source: url)
    }

    /// Decodes JPEG or PNG bytes; `source` names them in errors. An image whose header declares more than
    /// `DecodingLimit.maxPixels` pixels is refused before its pixels are decoded.
    public init(data: Data, source: URL) throws {
        let bytes = [UInt8](data.prefix(8))
        var decoded = vit_rgb_image()
        var message = [CChar](repeating: 0, count: 256)
        let status: Int32
        let limit = DecodingLimit.maxPixels
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) {
            status = data.withUnsafeBytes {
                vit_decode_jpeg($0.bindMemory(to: UInt8.self).baseAddress, data.count, limit, &decoded, &message, 256)
            }
        } else if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            status = data.withUnsafeBytes {
                vit_decode_png($0.bindMemory(to: UInt8.self).baseAddress, data.count, limit, &decoded, &message, 256)
            }
        } else if data.isEmpty {
            throw ImageError(source, "is empty")
        } else {
            throw ImageError(source, "is not a JPEG or PNG image (unsupported format)")
        }
        switch status {
        case 0: break
        case Int32(VIT_IMAGE_TOO_LARGE):
            throw ImageError(source, "\(String(cString: message)); --max-image-pixels raises the limit")
        default:
            throw ImageError(source, "is corrupt or truncated: \(String(cString: message))")
        }
        defer { vit_image_free(&decoded) }
        let count = Int(decoded.width) * Int(decoded.height) * 3
        let image = RGBImage(
            width: Int(decoded.width), height: Int(decoded.height),
            pixels: Array(UnsafeBufferPointer(start: decoded.pixels, count: count)))
        self = image.oriented(Int(decoded.orientation))
    }

    /// The image turned upright according to an EXIF orientation (1: as stored; 2-8: mirrored and/or rotated).
    public func oriented(_ orientation: Int) -> RGBImage {
        guard (2...8).contains(orientation) else { return self }
        let transposed = orientation >= 5
        let (w, h) = transposed ? (height, width) : (width, height)
        var out = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<h {
                    for x in 0..<w {
                        // Where output (x, y) comes from in the stored image.
                        let (sx, sy): (Int, Int)
                        switch orientation {
                        case 2: (sx, sy) = (width - 1 - x, y)
                        case 3: (sx, sy) = (width - 1 - x, height - 1 - y)
                        case 4: (sx, sy) = (x, height - 1 - y)
                        case 5: (sx, sy) = (y, x)
                        case 6: (sx, sy) = (y, height - 1 - x)
                        case 7: (sx, sy) = (width - 1 - y, height - 1 - x)
                        default: (sx, sy) = (width - 1 - y, x)
                        }
                        let s = (sy * width + sx) * 3, d = (y * w + x) * 3
                        dst[d] = src[s]; dst[d + 1] = src[s + 1]; dst[d + 2] = src[s + 2]
                    }
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }

    /// The region [left, left + width) x [top, top + height).
    public func cropped(left: Int, top: Int, width cropWidth: Int, height cropHeight: Int) -> RGBImage {
        precondition(
            left >= 0 && top >= 0 && left + cropWidth <= width && top + cropHeight <= height,
            "crop \(cropWidth)x\(cropHeight) at (\(left), \(top)) is outside \(width)x\(height)")
        var out = [UInt8](repeating: 0, count: cropWidth * cropHeight * 3)
        for y in 0..<cropHeight {
            let src = ((top + y) * width + left) * 3
            out.replaceSubrange((y * cropWidth * 3)..<((y + 1) * cropWidth * 3), with: pixels[src..<(src + cropWidth * 3)])
        }
        return RGBImage(width: cropWidth, height: cropHeight, pixels: out)
    }
}

/// The most pixels an image may declare, checked from its header before it is decoded (Pillow's
/// `Image.MAX_IMAGE_PIXELS`, whose default this is): a small file must not be able to claim gigabytes. Process-wide,
/// as Pillow's; commands set it from `--max-image-pixels`.
public enum DecodingLimit {
    public static let defaultMaxPixels = 89_478_485
    private static let lock = NSLock()
    nonisolated(unsafe) private static var value = defaultMaxPixels

    public static var maxPixels: Int {
        get { lock.withLock { value } }
        set {
            precondition(newValue > 0, "the pixel limit must be positive")
            lock.withLock { value = newValue }
        }
    }
}

/// An image that could not be used, naming the file and the reason.
public typealias ImageError = FileError

/// PNG output for plots and visualisations.
public enum PNG {
    /// Encodes 8-bit pixels: 1 (gray), 3 (RGB) or 4 (RGBA) channels, interleaved rows.
    public static func encode(_ pixels: [UInt8], width: Int, height: Int, channels: Int) throws -> Data {
        precondition(pixels.count == width * height * channels, "\(pixels.count) bytes for \(width)x\(height)x\(channels)")
        var buffer: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = vit_encode_png(pixels, Int32(width), Int32(height), Int32(channels), &buffer, &size, &message, 256)
        guard status == 0, let buffer else { throw PNGEncodingError(reason: String(cString: message)) }
        defer { free(buffer) }
        return Data(bytes: buffer, count: size)
    }

    /// Encodes and writes atomically (temporary file, then rename).
    public static func write(_ image: RGBImage, to url: URL) throws {
        try AtomicFile.write(try encode(image.pixels, width: image.width, height: image.height, channels: 3), to: url)
    }
}

public struct PNGEncodingError: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "PNG encoding failed: \(reason)" }
}
