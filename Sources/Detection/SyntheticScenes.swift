import Checkpoints
import Datasets
import Foundation
import Images
import Tensors

/// A detection data set made here, as no detection set ships on these machines: objects cut from classification
/// sets pasted at random scales and positions onto textured canvases, 1 to `maxObjects` per image, later ones
/// over earlier ones (boxes keep an occluded object's whole extent, as COCO's do), written as COCO-format
/// `instances_train.json` / `instances_val.json` beside `train/` and `val/` PNGs. Everything is drawn from one seed.
///
/// An object source is a classification set and how its images are cut out: Fashion-MNIST items (grey on black) by
/// their own brightness, so only the garment is pasted and its box is the garment's; CIFAR-10 photos whole, as
/// squares.
public struct SyntheticScenes {
    public struct Source {
        public let name: String
        public let images: [RGBImage]
        public let labels: [Int]
        public let classNames: [String]
        /// Cut the object out by its brightness (an item on black), or paste the whole square.
        public let masked: Bool

        public init(name: String, images: [RGBImage], labels: [Int], classNames: [String], masked: Bool) {
            (self.name, self.images, self.labels, self.classNames, self.masked) = (name, images, labels, classNames, masked)
        }

        /// At most `limit` images of `set`, drawn at random (from `seed`) rather than its first ones: an image folder
        /// is read class by class, and its first images would all be of its first classes.
        public init(name: String, sampling set: ImageDataset, limit: Int, seed: UInt64, masked: Bool) {
            var rng = SeededGenerator(seed: seed ^ 0x0B1E_C7)
            let chosen = Array(Array(0..<set.count).shuffled(using: &rng).prefix(max(limit, 0)))
            self.init(
                name: name, images: chosen.map(set.image), labels: chosen.map { set.labels[$0] }, classNames: set.classNames, masked: masked
            )
        }
    }

    public var canvasSize = 128
    public var maxObjects = 6
    /// Object sizes in pixels (the longer side), drawn uniformly.
    public var objectSizes = 20...64
    public var seed: UInt64 = 0
    public let sources: [Source]

    public init(sources: [Source]) { self.sources = sources }

    /// Every class, in category order (category id = index + 1): "source/name".
    public var categoryNames: [String] { sources.flatMap { s in s.classNames.map { "\(s.name)/\($0)" } } }

    /// One drawn object: its category (0-based), box x, y, w, h in pixels.
    public struct Placed: Equatable {
        public let category: Int
        public let box: (x: Int, y: Int, w: Int, h: Int)
        public static func == (a: Placed, b: Placed) -> Bool { a.category == b.category && a.box == b.box }
    }

    /// Scene `index` of a part: the same picture and objects for the same seed, part and index.
    public func scene(_ index: Int, part: UInt64) -> (image: RGBImage, objects: [Placed]) {
        var rng = SeededGenerator(seed: seed &* 1_000_003 &+ part &* 7_919 &+ UInt64(index))
        func uniform() -> Float { Float(rng.next() >> 40) / Float(1 << 24) }
        func integer(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(rng.next() % UInt64(range.count)) }
        let s = canvasSize
        // Background: a random colour modulated by two random waves and per-pixel grain.
        let base = (0..<3).map { _ in 60 + uniform() * 140 }
        let (fx, fy, phase) = (uniform() * 0.3, uniform() * 0.3, uniform() * 6.283)
        var pixels = [UInt8](repeating: 0, count: s * s * 3)
        for y in 0..<s {
            for x in 0..<s {
                let wave = 30 * sin(Float(x) * fx + phase) * cos(Float(y) * fy)
                for c in 0..<3 {
                    let v = base[c] + wave + (uniform() - 0.5) * 40
                    pixels[(y * s + x) * 3 + c] = UInt8(max(0, min(255, v)))
                }
            }
        }
        var objects: [Placed] = []
        var offset = 0
        let offsets = sources.map { source -> Int in
            defer { offset += source.classNames.count }
            return offset
        }
        // Sources without images place nothing (a scene of background alone when none has any).
        let usable = sources.indices.filter { !sources[$0].images.isEmpty }
        for _ in 0..<(usable.isEmpty ? 0 : integer(1...max(maxObjects, 1))) {
            let k = usable[integer(0...(usable.count - 1))]
            let source = sources[k]
            let item = integer(0...(source.images.count - 1))
            let size = integer(objectSizes.clamped(to: 4...max(4, s)))
            let object = PILResize.resize(source.images[item], width: size, height: size, filter: .bilinear)
            let (x0, y0) = (integer(0...(s - size)), integer(0...(s - size)))
            var (minX, minY, maxX, maxY) = (size, size, -1, -1)
            for y in 0..<size {
                for x in 0..<size {
                    let o = (y * size + x) * 3
                    // Fashion-MNIST: the item's brightness is its opacity; pixels darker than 1/8 are background.
                    let brightness = source.masked ? Float(max(object.pixels[o], object.pixels[o + 1], object.pixels[o + 2])) / 255 : 1
                    guard brightness > 0.125 else { continue }
                    (minX, minY, maxX, maxY) = (min(minX, x), min(minY, y), max(maxX, x), max(maxY, y))
                    let d = ((y0 + y) * s + x0 + x) * 3
                    for c in 0..<3 {
                        let tint: Float = source.masked ? [1.0, 0.85, 0.7][(c + item) % 3] : 1  // grey items get a colour
                        let value = Float(object.pixels[o + c]) * tint
                        pixels[d + c] = UInt8(max(0, min(255, brightness * value + (1 - brightness) * Float(pixels[d + c]))))
                    }
                }
            }
            guard maxX >= minX, maxY >= minY else { continue }
            objects.append(
                Placed(
                    category: offsets[k] + source.labels[item], box: (x0 + minX, y0 + minY, maxX - minX + 1, maxY - minY + 1)))
        }
        return (RGBImage(width: s, height: s, pixels: pixels), objects)
    }

    /// Writes `counts` scenes per part ("train", "val") under `folder` with their COCO annotation files (written
    /// through a temporary name); `partIndex` numbers the first part's random stream, `progress` hears the scenes
    /// written so far.
    public func write(to folder: URL, counts: [(part: String, count: Int)], partIndex: Int = 0, progress: (Int) -> Void = { _ in }) throws {
        var written = 0
        for (offset, (part, count)) in counts.enumerated() {
            let p = partIndex + offset
            let images = folder.appendingPathComponent(part)
            try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
            var imageEntries: [[String: Any]] = [], annotations: [[String: Any]] = []
            for i in 0..<count {
                let (image, objects) = scene(i, part: UInt64(p))
                let name = String(format: "%06d.png", i + 1)
                try PNG.write(image, to: images.appendingPathComponent(name))
                imageEntries.append(["id": i + 1, "file_name": "\(part)/\(name)", "width": image.width, "height": image.height])
                for o in objects {
                    annotations.append([
                        "id": annotations.count + 1, "image_id": i + 1, "category_id": o.category + 1,
                        "bbox": [o.box.x, o.box.y, o.box.w, o.box.h], "area": o.box.w * o.box.h, "iscrowd": 0
                    ])
                }
                written += 1
                progress(written)
            }
            let categories = categoryNames.enumerated().map { ["id": $0.offset + 1, "name": $0.element] as [String: Any] }
            let json: [String: Any] = ["images": imageEntries, "annotations": annotations, "categories": categories]
            let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
            try AtomicFile.write(data, to: folder.appendingPathComponent("instances_\(part).json"))
        }
    }
}
