import Checkpoints
import Foundation
import Images
import Tensors
import Testing

func fixture(_ path: String) -> URL {
    Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(path)
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
