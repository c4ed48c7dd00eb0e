import Datasets
import Foundation
import Images

/// An annotated detection set in memory: the images (one size, as a batch needs) and each one's objects, from a
/// COCO-format folder (`instances_<part>.json` beside the images its `file_name`s name). Model class i is the i-th
/// category by id.
public struct DetectionSet: Sendable {
    public let images: ImageDataset
    /// Each image's objects, boxes relative to the image (cx, cy, w, h).
    public let targets: [DetectionTarget]
    public let classNames: [String]
    /// Each class's COCO category id.
    public let categoryIds: [Int]
    /// The COCO file and the images' ids in it, in the set's order (what an evaluation scores against).
    public let annotations: COCOAnnotations
    public let imageIds: [Int]

    /// The part's annotation file in `folder`: instances_train.json, or instances_val.json / instances_test.json.
    public static func annotationFile(in folder: URL, part: DataPart) -> URL? {
        let names = part == .train ? ["instances_train.json"] : ["instances_val.json", "instances_test.json"]
        return names.map { folder.appendingPathComponent($0) }.first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// Reads and checks the part: every box inside its image with a positive area, every image of one size; a
    /// problem is one error naming the file and the entry.
    public static func load(_ folder: URL, part: DataPart) throws -> DetectionSet {
        guard let file = annotationFile(in: folder, part: part) else {
            throw COCOError(
                folder, "has no \(part == .train ? "instances_train.json" : "instances_val.json") (COCO annotations beside the images)")
        }
        let coco = try COCOAnnotations(contentsOf: file)
        guard !coco.images.isEmpty else { throw COCOError(file, "lists no images") }
        let categories = coco.categories.sorted { $0.id < $1.id }
        let classOf = Dictionary(uniqueKeysWithValues: categories.enumerated().map { ($0.element.id, $0.offset) })
        var pixels: [UInt8] = [], sources: [String] = []
        var size: (Int, Int)?
        var byImage: [Int: [COCOAnnotations.Object]] = [:]
        for object in coco.annotations { byImage[object.imageId, default: []].append(object) }
        var targets: [DetectionTarget] = []
        for (i, image) in coco.images.enumerated() {
            guard let name = image.fileName else { throw COCOError(file, "images[\(i)] (id \(image.id)) has no file_name") }
            let url = folder.appendingPathComponent(name)
            let picture = try RGBImage(contentsOf: url)
            if let size, size != (picture.width, picture.height) {
                throw COCOError(
                    url, "is \(picture.width)x\(picture.height), the first image \(size.0)x\(size.1): training needs images of one size")
            }
            size = (picture.width, picture.height)
            let (w, h) = (Double(picture.width), Double(picture.height))
            var labels: [Int] = [], boxes: [Box] = []
            for object in byImage[image.id] ?? [] {
                let b = object.bbox
                guard b[2] > 0, b[3] > 0 else { throw COCOError(file, "annotation \(object.id) has a box of zero area: \(b)") }
                guard b[0] >= 0, b[1] >= 0, b[0] + b[2] <= w + 1e-6, b[1] + b[3] <= h + 1e-6 else {
                    throw COCOError(file, "annotation \(object.id)'s box \(b) is outside its image (\(picture.width)x\(picture.height))")
                }
                labels.append(classOf[object.categoryId] ?? 0)
                boxes.append(
                    Box(cx: Float((b[0] + b[2] / 2) / w), cy: Float((b[1] + b[3] / 2) / h), w: Float(b[2] / w), h: Float(b[3] / h)))
            }
            targets.append(DetectionTarget(labels: labels, boxes: boxes))
            pixels += picture.pixels
            sources.append(name)
        }
        let (width, height) = size ?? (0, 0)
        let data = ImageDataset(
            width: width, height: height, pixels: pixels, labels: [Int](repeating: 0, count: coco.images.count),
            classNames: categories.map(\.name), sources: sources)
        return DetectionSet(
            images: data, targets: targets, classNames: categories.map(\.name), categoryIds: categories.map(\.id), annotations: coco,
            imageIds: coco.images.map(\.id))
    }
}
