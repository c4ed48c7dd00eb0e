import Checkpoints
import Foundation
import Images
import Tensors
import TestSupport
import Testing

func fixture(_ path: String) -> URL {
    Fixtures.url("ImagesTests", path)
}

/// CRC-32 (ISO-HDLC, as PNG chunks carry it).
func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

/// Decoding against Pillow's `Image.open(...).convert("RGB")` (scripts/make-image-fixtures.py made the files).
@Suite struct DecodingTests {
    let expected = try! SafetensorsFile(contentsOf: fixture("decode/expected.safetensors"))

    func check(_ name: String, tolerance: Int = 0) throws {
        let image = try RGBImage(contentsOf: fixture("decode/\(name)"))
        let reference = try expected.tensor(name)
        #expect([image.height, image.width, 3] == reference.shape, "\(name): \(image.width)x\(image.height) vs \(reference.shape)")
        let worst = zip(image.pixels, reference.toArray()).map { abs(Int($0) - Int($1)) }.max() ?? 0
        #expect(worst <= tolerance, "\(name): pixels differ from Pillow's by up to \(worst)")
    }

    @Test(arguments: [
        "rgb.png", "gray.png", "gray1bit.png", "gray_alpha.png", "rgba.png", "palette.png",
        "interlaced.png", "rgb16.png"
    ])
    func pngMatchesPillowExactly(name: String) throws { try check(name) }

    // libjpeg-turbo versions may round the inverse DCT differently by a level.
    @Test(arguments: ["rgb.jpg", "gray.jpg", "cmyk.jpg", "orientation6.jpg"])
    func jpegMatchesPillow(name: String) throws { try check(name, tolerance: 2) }

    @Test func badFilesAreReportedWithPathAndReason() {
        for (name, reason) in [
            ("truncated.jpg", "corrupt or truncated"), ("truncated.png", "corrupt or truncated"),
            ("not-an-image.jpg", "not a JPEG or PNG"), ("empty.png", "empty"),
            ("missing.png", "no such file")
        ] {
            #expect {
                try RGBImage(contentsOf: fixture("decode/\(name)"))
            } throws: { error in
                "\(error)".contains(name) && "\(error)".contains(reason)
            }
        }
    }

    /// rgb.jpg with an APP1 "Exif" segment inserted after its SOI marker.
    static func withExif(_ tiff: [UInt8]) throws -> Data {
        let jpeg = [UInt8](try Data(contentsOf: fixture("decode/rgb.jpg")))
        let payload = Array("Exif\0\0".utf8) + tiff
        let length = payload.count + 2
        return Data(jpeg[0..<2] + [0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + payload + jpeg[2...])
    }

    /// An IFD offset near 2^32 once made the orientation lookup read 4 GB past its buffer (an unsigned sum wrapped).
    @Test(arguments: [0xFFFF_FFFE, 0xFFFF_FFF0, 9, 10] as [UInt32])
    func hostileExifOffsetsAreIgnored(offset: UInt32) throws {
        let o = withUnsafeBytes(of: offset.bigEndian) { Array($0) }
        // Big-endian TIFF header; a claimed 0xFFFF entries where the offset lands inside the segment.
        let data = try Self.withExif(Array("MM".utf8) + [0, 42] + o + [0xFF, 0xFF, 0x01, 0x12])
        let image = try RGBImage(data: data, source: URL(fileURLWithPath: "exif.jpg"))
        #expect(image.pixels == (try RGBImage(contentsOf: fixture("decode/rgb.jpg"))).pixels)
    }

    /// A header declaring more pixels than the limit is refused before decoding (no allocation for them).
    @Test func declaredSizesBeyondThePixelLimitAreRefused() throws {
        var jpeg = [UInt8](try Data(contentsOf: fixture("decode/rgb.jpg")))
        let sof = try #require(jpeg.indices.first { jpeg[$0] == 0xFF && (jpeg[$0 + 1] == 0xC0 || jpeg[$0 + 1] == 0xC2) })
        jpeg.replaceSubrange((sof + 5)..<(sof + 9), with: [0x75, 0x30, 0x75, 0x30])  // 30000 x 30000
        var png = [UInt8](try Data(contentsOf: fixture("decode/rgb.png")))
        png.replaceSubrange(16..<24, with: [0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30])
        png.replaceSubrange(29..<33, with: withUnsafeBytes(of: crc32(png[12..<29]).bigEndian) { Array($0) })  // IHDR's CRC
        for (name, bytes) in [("bomb.jpg", jpeg), ("bomb.png", png)] {
            #expect {
                try RGBImage(data: Data(bytes), source: URL(fileURLWithPath: name))
            } throws: { error in
                "\(error)".contains(name) && "\(error)".contains("more than the limit of 89478485")
            }
        }
    }

    /// As Pillow ("image file is truncated"), data that ends early is an error, wherever it is cut.
    @Test(arguments: ["rgb.jpg", "gray.jpg", "rgb.png", "interlaced.png"])
    func everyCutFileIsAnError(name: String) throws {
        let bytes = try Data(contentsOf: fixture("decode/\(name)"))
        var accepted: [Int] = []
        for length in stride(from: 1, to: bytes.count - 2, by: 7) {
            if (try? RGBImage(data: bytes.prefix(length), source: URL(fileURLWithPath: name))) != nil { accepted.append(length) }
        }
        #expect(accepted.isEmpty, "\(name) cut to \(accepted) bytes decoded without an error")
    }

    @Test func pngEncodingRoundTrips() throws {
        let image = try RGBImage(contentsOf: fixture("decode/rgb.png"))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvit-\(UUID().uuidString).png")
        defer { try? FileManager.default.removeItem(at: url) }
        try PNG.write(image, to: url)
        #expect(try RGBImage(contentsOf: url).pixels == image.pixels)
    }
}

/// timm's evaluation transform on real photos against `../shared/fixtures/preprocess`. The bar set for it is 0.01 on
/// >= 99% of values; the resampler reproduces Pillow's fixed-point arithmetic, so every value agrees to float
/// rounding (1e-5), and the test holds it to that.
@Suite struct PreprocessingTests {
    let reference = try! SafetensorsFile(contentsOf: fixture("preprocess/reference.safetensors"))

    static let transforms: [(String, EvalTransform)] = [
        ("vit", EvalTransform(size: 224, cropPct: 0.9, filter: .bicubic)),
        ("deit", EvalTransform(size: 224, cropPct: 0.875, filter: .bicubic, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])),
        ("bilinear384", EvalTransform(size: 384, cropPct: 1, filter: .bilinear))
    ]

    /// Resizing only a region gives the pixels of resizing the whole image and cropping.
    @Test(arguments: [(37, 91, 50, 120), (91, 37, 20, 9), (64, 64, 64, 200), (13, 200, 13, 31)])
    func regionEqualsResizeThenCrop(width: Int, height: Int, newWidth: Int, newHeight: Int) {
        var state: UInt32 = 12345
        let pixels = (0..<(width * height * 3)).map { _ -> UInt8 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
        let image = RGBImage(width: width, height: height, pixels: pixels)
        for filter in Resampling.Filter.allCases {
            let whole = PILResize.resize(image, width: newWidth, height: newHeight, filter: filter)
            for (left, top, w, h) in [(0, 0, newWidth, newHeight), (3, 5, newWidth / 2, newHeight / 3), (newWidth - 1, newHeight - 2, 1, 2)]
            {
                let region = PILResize.resize(
                    image, width: newWidth, height: newHeight, filter: filter, region: .init(left: left, top: top, width: w, height: h))
                #expect(
                    region.pixels == whole.cropped(left: left, top: top, width: w, height: h).pixels, "\(filter) \(left),\(top) \(w)x\(h)")
            }
        }
    }

    /// A 1 x 1,000,000 strip at 224 px: the resized image would be 224 x 224,000,000 (150 GB); only the crop is made.
    @Test func extremeAspectRatiosResizeOnlyTheCrop() throws {
        let strip = RGBImage(width: 1, height: 1_000_000, pixels: [UInt8](repeating: 200, count: 3_000_000))
        let cropped = EvalTransform(size: 224, cropPct: 0.875).crop(strip)
        #expect(cropped.width == 224 && cropped.height == 224)
        #expect(cropped.pixels.allSatisfy { $0 == 200 })
        let tiny = try RGBImage(contentsOf: fixture("preprocess/chelsea.png"))
        #expect(EvalTransform(size: 224, cropPct: 0.001).crop(tiny).pixels.count == 224 * 224 * 3)
    }

    @Test(arguments: ["chelsea.png", "coffee.png"])
    func matchesTimm(photo: String) throws {
        let image = try RGBImage(contentsOf: fixture("preprocess/\(photo)"))
        for (name, transform) in Self.transforms {
            let ours = transform(image).toArray()
            let theirs = try reference.tensor("\(photo).\(name)")
            #expect(theirs.count == ours.count)
            let close = zip(ours, theirs.toArray()).filter { abs($0 - $1) <= 0.01 }.count
            let fraction = Double(close) / Double(ours.count)
            let worst = zip(ours, theirs.toArray()).map { abs($0 - $1) }.max() ?? 0
            #expect(fraction >= 0.9999 && worst < 1e-5, "\(photo) \(name): \(fraction * 100)% within 0.01")
        }
    }
}
