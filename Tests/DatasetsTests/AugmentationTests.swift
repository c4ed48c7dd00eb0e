import Datasets
import Foundation
import Images
import Tensors
import TestSupport
import Testing

@Suite struct AugmentationTests {
    /// A 4x4 image whose red channel numbers the pixels 1...16 row by row.
    let numbered = RGBImage(width: 4, height: 4, pixels: (0..<16).flatMap { [UInt8($0 + 1), 0, 0] })

    func red(_ image: RGBImage) -> [UInt8] { stride(from: 0, to: image.pixels.count, by: 3).map { image.pixels[$0] } }

    @Test func randomCropIsAShiftedWindowOfThePaddedImage() {
        var augmentation = Augmentation.none
        augmentation.cropPadding = 1
        var shifts = Set<[UInt8]>()
        var rng = SeededGenerator(seed: 3)
        for _ in 0..<200 {
            let out = red(augmentation.apply(numbered, using: &rng))
            // Every output is the input shifted by (dx, dy) in -1...1 with zeros shifted in.
            let found = (-1...1).flatMap { dy in (-1...1).map { dx in (dx, dy) } }.contains { dx, dy in
                (0..<16).allSatisfy { i in
                    let (x, y) = (i % 4 + dx, i / 4 + dy)
                    return out[i] == ((0..<4).contains(x) && (0..<4).contains(y) ? UInt8(y * 4 + x + 1) : 0)
                }
            }
            #expect(found)
            shifts.insert(out)
        }
        #expect(shifts.count == 9)  // all nine offsets occur
    }

    @Test func flipMirrorsRowsAboutHalfTheTime() {
        var augmentation = Augmentation.none
        augmentation.horizontalFlip = true
        var rng = SeededGenerator(seed: 1)
        var flipped = 0
        for _ in 0..<400 {
            let out = red(augmentation.apply(numbered, using: &rng))
            if out == red(numbered) { continue }
            #expect(Array(out[0..<4]) == [4, 3, 2, 1])
            flipped += 1
        }
        #expect(flipped > 160 && flipped < 240)
    }

    @Test func randAugmentOperationsKeepTheSizeAndChangeThePixels() {
        var rng = SeededGenerator(seed: 2)
        // Dark and low in contrast, so that equalisation and auto-contrast have something to do.
        // (32x32: PIL's equalisation leaves images of fewer than 255 pixels alone, and so does ours.)
        let photo = RGBImage(width: 32, height: 32, pixels: (0..<3072).map { _ in UInt8(20 + rng.next() % 90) })
        for op in RandAugment.Operation.allCases {
            let out = RandAugment.apply(op, level: 0.9, sign: 1, to: photo)
            #expect(out.width == 32 && out.height == 32)
            #expect(out.pixels != photo.pixels, "\(op)")
        }
        // Invert and solarize at the top level are exact.
        #expect(RandAugment.apply(.invert, level: 0, sign: 1, to: photo).pixels == photo.pixels.map { 255 - $0 })
        // A zero translation is the identity (bilinear sampling at pixel centres).
        #expect(RandAugment.apply(.translateX, level: 0, sign: 1, to: photo).pixels == photo.pixels)
        // The same seed gives the same result.
        var a = SeededGenerator(seed: 7), b = SeededGenerator(seed: 7)
        #expect(
            RandAugment(ops: 2, magnitude: 9).apply(photo, using: &a).pixels
                == RandAugment(ops: 2, magnitude: 9).apply(photo, using: &b).pixels)
    }

    func dataset(_ count: Int) -> ImageDataset {
        ImageDataset(
            width: 4, height: 4, pixels: (0..<count).flatMap { i in [UInt8](repeating: UInt8(i * 10), count: 48) },
            labels: (0..<count).map { $0 % 3 }, classNames: ["a", "b", "c"])
    }

    @Test func batchesNormaliseAndDoNotDependOnWhereARunStarts() {
        var options = TrainingLoader.Options(batchSize: 4, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        options.seed = 11
        options.augmentation.randomErasing = 0.5
        options.mixing = BatchMixing(mixupAlpha: 0.5, cutmixAlpha: 1)
        let all = Array(TrainingLoader(dataset(10), options: options, epoch: 3))
        #expect(all.count == 2 && all.map(\.index) == [0, 1])  // the last, incomplete batch is dropped
        let fromOne = Array(TrainingLoader(dataset(10), options: options, epoch: 3, startBatch: 1, background: false))
        #expect(fromOne.count == 1 && fromOne[0].images.toArray() == all[1].images.toArray())
        #expect(fromOne[0].targets?.toArray() == all[1].targets?.toArray() && fromOne[0].labels == all[1].labels)
        // Another epoch, another order.
        #expect(Array(TrainingLoader(dataset(10), options: options, epoch: 4)).flatMap(\.labels) != all.flatMap(\.labels))
        // Mixed targets are distributions whose largest share is at least on the image's own class... or its mirror's.
        for batch in all {
            let t = batch.targets!.toArray()
            for b in 0..<4 { #expect(abs(t[(3 * b)..<(3 * b + 3)].reduce(0, +) - 1) < 1e-5) }
        }
        // Without augmentation, evaluation batches are the images normalised, in order, the last one kept.
        var plain = TrainingLoader.Options(batchSize: 4, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        plain.shuffle = false
        plain.dropLast = false
        let eval = Array(TrainingLoader(dataset(10), options: plain))
        #expect(eval.count == 3 && eval[2].labels == [2, 0] && eval[0].targets == nil)
        #expect(abs(eval[1].images.toArray()[48] - (50 / 255 - 0.5) / 0.25) < 1e-6)  // image 5, value 50
    }

    @Test func cutmixTargetsMatchThePastedArea() {
        var options = TrainingLoader.Options(batchSize: 2, mean: [0, 0, 0], std: [1, 1, 1])
        options.shuffle = false
        options.mixing = BatchMixing(cutmixAlpha: 1)
        let images = ImageDataset(
            width: 4, height: 4, pixels: [UInt8](repeating: 0, count: 48) + [UInt8](repeating: 255, count: 48),
            labels: [0, 1], classNames: ["black", "white"])
        for epoch in 0..<10 {
            let batch = Array(TrainingLoader(images, options: options, epoch: epoch))[0]
            let pixels = batch.images.toArray()
            let pasted = Float(pixels[0..<16].filter { $0 == 1 }.count) / 16  // white pixels in the black image
            #expect(abs(batch.targets!.toArray()[1] - pasted) < 1e-6)
        }
    }

    @Test func loadRecognisesTrainTestFoldersAndSkipsACorruptImage() throws {
        let root = try temporaryFolder("swiftvit-load")
        defer { try? FileManager.default.removeItem(at: root) }
        for part in ["train", "test"] {
            for name in ["cat", "dog"] {
                let folder = root.appendingPathComponent("\(part)/\(name)")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                for n in 0..<3 {
                    try PNG.write(
                        RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: UInt8(n), count: 12)),
                        to: folder.appendingPathComponent("\(n).png"))
                }
            }
        }
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 1, 2]).write(to: root.appendingPathComponent("train/dog/bad.jpg"))
        let parts = try ImageDataset.load(root, parts: [.train, .test])
        #expect(parts[.train]?.count == 6 && parts[.test]?.count == 6)
        #expect(parts[.train]?.failures.count == 1 && "\(parts[.train]!.failures[0])".contains("train/dog/bad.jpg"))
        // A plain class folder serves both parts.
        let plain = try ImageDataset.load(root.appendingPathComponent("test"), parts: [.test])
        #expect(plain[.test]?.classNames == ["cat", "dog"])
        #expect { try ImageDataset.load(root.appendingPathComponent("nowhere"), parts: [.train]) } throws: { "\($0)".contains("nowhere") }
    }

    @Test func channelStatistics() {
        let data = ImageDataset(width: 1, height: 2, pixels: [0, 255, 51, 255, 255, 51], labels: [0], classNames: ["x"])
        let (mean, std) = data.channelStatistics()
        #expect(abs(mean[0] - 0.5) < 1e-6 && abs(mean[1] - 1) < 1e-6 && abs(mean[2] - 0.2) < 1e-6)
        #expect(abs(std[0] - 0.5) < 1e-6 && std[1] < 1e-5)
    }
}
