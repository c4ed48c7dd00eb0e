import Datasets
import Foundation
import Images
import Tensors
import TestSupport
import Testing

/// Images of any size are brought to one size when loaded; a flat folder is never both training and test data.
@Suite struct SizingTests {
    /// root/<class>/<n>.png of the given sizes, a horizontal gradient so that resizing has something to do.
    func makeFolder(_ root: URL, sizes: [(Int, Int)], classes: [String] = ["a", "b"]) throws {
        for (c, name) in classes.enumerated() {
            let folder = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for (n, (w, h)) in sizes.enumerated() {
                let pixels = (0..<(w * h)).flatMap { i -> [UInt8] in [UInt8(255 * (i % w) / max(w - 1, 1)), UInt8(60 * c), UInt8(n)] }
                try PNG.write(RGBImage(width: w, height: h, pixels: pixels), to: folder.appendingPathComponent("\(n).png"))
            }
        }
    }

    @Test func headersGiveTheStoredSizeWithoutDecoding() throws {
        let png = try PNG.encode([UInt8](repeating: 9, count: 7 * 5 * 3), width: 7, height: 5, channels: 3)
        #expect(ImageHeader.size(of: png)! == (7, 5))
        let jpeg = try Data(
            contentsOf: Fixtures.url("ImagesTests", "decode/rgb.jpg"))
        let decoded = try RGBImage(data: jpeg, source: URL(fileURLWithPath: "x.jpg"))
        #expect(ImageHeader.size(of: jpeg)! == (decoded.width, decoded.height))
        #expect(ImageHeader.size(of: Data("not an image".utf8)) == nil)
        #expect(ImageHeader.size(of: jpeg.prefix(20)) == nil)
    }

    @Test func mixedSizesAreAllResizedNoneDropped() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeFolder(root, sizes: [(40, 30), (50, 50), (17, 64)])
        // Without a size: the images differ, so all go to the fallback.
        let parts = try ImageDataset.load(root, parts: [.train, .test], sizing: .nativeIfUniform(fallback: 16))
        let train = try #require(parts[.train])
        #expect(parts[.test] == nil, "a flat folder is not also the test part")
        #expect(train.count == 6 && train.failures.isEmpty && train.width == 16 && train.height == 16)
        #expect(Set(train.sources) == Set(["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png", "b/2.png"]))
        // Each image is timm's eval crop of the original: check one against the transform itself.
        let original = try RGBImage(contentsOf: root.appendingPathComponent("a/0.png"))
        #expect(train.image(0).pixels == EvalTransform(size: 16, cropPct: 1).crop(original).pixels)
        // An explicit size with crop_pct as timm's eval transform.
        let cropped = try #require(try ImageDataset.load(root, parts: [.test], sizing: .size(24, cropPct: 0.875))[.test])
        #expect(cropped.width == 24 && cropped.count == 6)
        #expect(cropped.image(0).pixels == EvalTransform(size: 24, cropPct: 0.875).crop(original).pixels)
    }

    @Test func uniformSquareImagesKeepTheirSize() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeFolder(root, sizes: [(12, 12), (12, 12)])
        let train = try #require(try ImageDataset.load(root, parts: [.train], sizing: .nativeIfUniform(fallback: 32))[.train])
        #expect(train.width == 12 && train.count == 4)
        let resized = train.resized(to: .init(size: 6))
        #expect(resized.width == 6 && resized.count == 4 && resized.labels == train.labels && resized.sources == train.sources)
    }

    @Test func splitsNeverOverlapAndRepeatExactly() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeFolder(root, sizes: Array(repeating: (4, 4), count: 10), classes: ["a", "b", "c"])
        let whole = try #require(try ImageDataset.load(root, parts: [.train])[.train])
        let (train, validation) = whole.stratifiedSplit(validationFraction: 0.3, seed: 4)
        #expect(Set(train.sources).isDisjoint(with: validation.sources))
        #expect(Set(train.sources).union(validation.sources) == Set(whole.sources))
        #expect(validation.count == 9 && train.count == 21)
        #expect(whole.stratifiedSplit(validationFraction: 0.3, seed: 4).validation.sources == validation.sources)
        #expect(whole.stratifiedSplit(validationFraction: 0.3, seed: 5).validation.sources != validation.sources)
    }
}
