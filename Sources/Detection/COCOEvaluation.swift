import Foundation

/// A COCO-format annotation file (`instances_*.json`): images, categories, and the objects' boxes in pixels.
public struct COCOAnnotations: Sendable {
    public struct Image: Sendable {
        public let id: Int
        public let fileName: String?
        public let width: Int?, height: Int?
    }
    public struct Object: Sendable {
        public let id: Int
        public let imageId: Int
        public let categoryId: Int
        /// x, y, width, height in pixels.
        public let bbox: [Double]
        public let area: Double
        public let isCrowd: Bool
    }

    public let images: [Image]
    public let categories: [(id: Int, name: String)]
    public let annotations: [Object]

    /// Reads and checks a COCO annotation file: every annotation names an image and a category the file lists and
    /// has a box of four finite numbers; a problem is one error naming the file and the entry.
    public init(contentsOf url: URL) throws {
        func fail(_ why: String) -> COCOError { COCOError(url, why) }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw fail(FileManager.default.fileExists(atPath: url.path) ? "cannot be read" : "no such file")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let images = json["images"] as? [[String: Any]], let annotations = json["annotations"] as? [[String: Any]],
            let categories = json["categories"] as? [[String: Any]]
        else { throw fail("is not a COCO annotation file (a JSON object with images, annotations and categories)") }
        func int(_ value: Any?) -> Int? {
            (value as? NSNumber).flatMap {
                $0.doubleValue == $0.doubleValue.rounded() && abs($0.doubleValue) < 1e15 ? Int($0.doubleValue) : nil
            }
        }
        self.images = try images.enumerated().map { i, image in
            guard let id = int(image["id"]) else { throw fail("images[\(i)] has no integer id") }
            return Image(id: id, fileName: image["file_name"] as? String, width: int(image["width"]), height: int(image["height"]))
        }
        self.categories = try categories.enumerated().map { i, category in
            guard let id = int(category["id"]) else { throw fail("categories[\(i)] has no integer id") }
            return (id, category["name"] as? String ?? "\(id)")
        }
        let imageIds = Set(self.images.map(\.id)), categoryIds = Set(self.categories.map(\.id))
        self.annotations = try annotations.enumerated().map { i, a in
            guard let id = int(a["id"]), let image = int(a["image_id"]), let category = int(a["category_id"]) else {
                throw fail("annotations[\(i)] lacks an integer id, image_id or category_id")
            }
            guard imageIds.contains(image) else {
                throw fail("annotations[\(i)] (id \(id)) names image \(image), which images does not list")
            }
            guard categoryIds.contains(category) else {
                throw fail("annotations[\(i)] (id \(id)) has category_id \(category), which categories does not list")
            }
            guard let box = (a["bbox"] as? [NSNumber])?.map(\.doubleValue), box.count == 4, box.allSatisfy(\.isFinite) else {
                throw fail("annotations[\(i)] (id \(id)) has no bbox of four numbers [x, y, width, height]")
            }
            let area = (a["area"] as? NSNumber)?.doubleValue ?? box[2] * box[3]
            return Object(id: id, imageId: image, categoryId: category, bbox: box, area: area, isCrowd: (int(a["iscrowd"]) ?? 0) != 0)
        }
    }
}

/// Detections in COCO's results format (`[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`).
public struct COCOResults: Sendable {
    public struct Detection: Sendable {
        public let imageId: Int
        public let categoryId: Int
        public let bbox: [Double]
        public let score: Double
        public init(imageId: Int, categoryId: Int, bbox: [Double], score: Double) {
            (self.imageId, self.categoryId, self.bbox, self.score) = (imageId, categoryId, bbox, score)
        }
    }
    public let detections: [Detection]

    public init(_ detections: [Detection]) { self.detections = detections }

    /// Reads a results file; every detection must name an image of `annotations` (as pycocotools' `loadRes` asks).
    public init(contentsOf url: URL, for annotations: COCOAnnotations) throws {
        func fail(_ why: String) -> COCOError { COCOError(url, why) }
        guard let data = try? Data(contentsOf: url) else {
            throw fail(FileManager.default.fileExists(atPath: url.path) ? "cannot be read" : "no such file")
        }
        guard let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw fail("is not a COCO results file (a JSON array of {image_id, category_id, bbox, score})")
        }
        let imageIds = Set(annotations.images.map(\.id))
        detections = try list.enumerated().map { i, d in
            guard let image = (d["image_id"] as? NSNumber)?.intValue, let category = (d["category_id"] as? NSNumber)?.intValue,
                let score = (d["score"] as? NSNumber)?.doubleValue, score.isFinite,
                let box = (d["bbox"] as? [NSNumber])?.map(\.doubleValue), box.count == 4, box.allSatisfy(\.isFinite)
            else { throw fail("[\(i)] is not {image_id, category_id, bbox: [x, y, w, h], score}") }
            guard imageIds.contains(image) else { throw fail("[\(i)] names image \(image), which the annotations do not list") }
            return Detection(imageId: image, categoryId: category, bbox: box, score: score)
        }
    }
}

public struct COCOError: Error, CustomStringConvertible {
    public let description: String
    public init(_ url: URL, _ why: String) { description = "\(url.path): \(why)" }
}

/// COCO's box evaluation, as pycocotools' `COCOeval(gt, dt, 'bbox')` computes it step for step (`evaluate`,
/// `accumulate`, `summarize`): per image and category the detections, best score first, are matched greedily to the
/// objects at each IoU threshold 0.50:0.05:0.95 (crowds and objects outside the area range ignored), precision is made
/// monotone and read at 101 recall points; AP and AR are the means over what is defined.
public struct COCOEvaluation: Sendable {
    /// AP, AP50, AP75, AP small/medium/large, AR1, AR10, AR100, AR small/medium/large (-1 where undefined).
    public let stats: [Double]
    /// Each category's AP (IoU 0.50:0.95, all areas, 100 detections), -1 where it has no objects.
    public let perCategory: [(id: Int, name: String, ap: Double)]
    public static let statNames = [
        "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"
    ]

    // numpy's linspace: start + i · step, the last exactly the stop.
    static let iouThresholds: [Double] = (0..<10).map { (i: Int) -> Double in i == 9 ? 0.95 : Double(i) * ((0.95 - 0.5) / 9) + 0.5 }
    static let recallThresholds: [Double] = (0..<101).map { (i: Int) -> Double in i == 100 ? 1 : Double(i) * (1.0 / 100) }
    static let maxDetections = [1, 10, 100]
    static let areaRanges: [(Double, Double)] = [(0, 1e10), (0, 1024), (1024, 9216), (9216, 1e10)]  // all, < 32², < 96², more

    /// One image and category's matching at one area range (pycocotools' `evaluateImg`).
    struct ImageResult {
        var detectionScores: [Double]
        /// [threshold][detection]: the matched object's id (0: none).
        var detectionMatches: [[Int]]
        var detectionIgnored: [[Bool]]
        var objectIgnored: [Bool]
    }

    /// The IoU of a detection box with an object box (pycocotools' `bbIou`): over the detection's area alone for a
    /// crowd.
    static func iou(_ d: [Double], _ g: [Double], crowd: Bool) -> Double {
        let w = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
        let h = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
        guard w > 0, h > 0 else { return 0 }
        let inter = w * h, union = crowd ? d[2] * d[3] : d[2] * d[3] + g[2] * g[3] - inter
        return inter / union
    }

    /// Indices sorted by descending `key`, ties in their original order (numpy's mergesort on -key).
    static func stableDescending(_ keys: [Double]) -> [Int] {
        keys.indices.sorted { keys[$0] != keys[$1] ? keys[$0] > keys[$1] : $0 < $1 }
    }

    public init(annotations gt: COCOAnnotations, results: COCOResults) {
        let imageIds = gt.images.map(\.id).sorted(), categoryIds = gt.categories.map(\.id).sorted()
        var objects: [Int: [Int: [COCOAnnotations.Object]]] = [:], detections: [Int: [Int: [COCOResults.Detection]]] = [:]
        for o in gt.annotations { objects[o.imageId, default: [:]][o.categoryId, default: []].append(o) }
        for d in results.detections { detections[d.imageId, default: [:]][d.categoryId, default: []].append(d) }
        let thresholds = Self.iouThresholds, maxDetection = Self.maxDetections.last ?? 100

        // evaluate(): every category, area range and image.
        func evaluateImage(_ image: Int, _ category: Int, _ range: (Double, Double)) -> ImageResult? {
            let allObjects = objects[image]?[category] ?? [], allDetections = detections[image]?[category] ?? []
            if allObjects.isEmpty && allDetections.isEmpty { return nil }
            // IoUs of the top-scoring detections (computeIoU) with the objects in file order.
            let byScore = Self.stableDescending(allDetections.map(\.score)).prefix(maxDetection).map { allDetections[$0] }
            let ignored = allObjects.map { $0.isCrowd || $0.area < range.0 || $0.area > range.1 }
            let objectOrder = Self.stableDescending(ignored.map { $0 ? -1 : 0 })  // not ignored first, stably
            let g = objectOrder.map { allObjects[$0] }, gIgnored = objectOrder.map { ignored[$0] }
            let d = Array(byScore.prefix(maxDetection))
            var matches = [[Int]](repeating: [Int](repeating: 0, count: d.count), count: thresholds.count)
            var dIgnored = [[Bool]](repeating: [Bool](repeating: false, count: d.count), count: thresholds.count)
            var objectMatched = [[Bool]](repeating: [Bool](repeating: false, count: g.count), count: thresholds.count)
            let ious = d.map { det in g.map { Self.iou(det.bbox, $0.bbox, crowd: $0.isCrowd) } }
            if !g.isEmpty {
                for (t, threshold) in thresholds.enumerated() {
                    for (di, _) in d.enumerated() {
                        var best = min(threshold, 1 - 1e-10), m = -1
                        for (gi, object) in g.enumerated() {
                            if objectMatched[t][gi] && !object.isCrowd { continue }
                            if m > -1 && !gIgnored[m] && gIgnored[gi] { break }
                            if ious[di][gi] < best { continue }
                            (best, m) = (ious[di][gi], gi)
                        }
                        guard m > -1 else { continue }
                        dIgnored[t][di] = gIgnored[m]
                        matches[t][di] = g[m].id
                        objectMatched[t][m] = true
                    }
                }
            }
            for (di, det) in d.enumerated() {
                let area = det.bbox[2] * det.bbox[3]
                if area < range.0 || area > range.1 {
                    for t in thresholds.indices where matches[t][di] == 0 { dIgnored[t][di] = true }
                }
            }
            return ImageResult(
                detectionScores: d.map(\.score), detectionMatches: matches, detectionIgnored: dIgnored, objectIgnored: gIgnored)
        }

        // accumulate(): precision [T][R][K][A][M] and recall [T][K][A][M], -1 where undefined.
        let (T, R, K, A, M) = (
            thresholds.count, Self.recallThresholds.count, categoryIds.count, Self.areaRanges.count, Self.maxDetections.count
        )
        var precision = [Double](repeating: -1, count: T * R * K * A * M), recall = [Double](repeating: -1, count: T * K * A * M)
        for (k, category) in categoryIds.enumerated() {
            for (a, range) in Self.areaRanges.enumerated() {
                let results = imageIds.compactMap { evaluateImage($0, category, range) }
                if results.isEmpty { continue }
                for (mi, maxDet) in Self.maxDetections.enumerated() {
                    var scores: [Double] = [], matched: [[Bool]] = Array(repeating: [], count: T),
                        ignoredD: [[Bool]] = Array(repeating: [], count: T)
                    var positives = 0
                    for r in results {
                        let n = min(maxDet, r.detectionScores.count)
                        scores += r.detectionScores.prefix(n)
                        for t in 0..<T {
                            matched[t] += r.detectionMatches[t].prefix(n).map { $0 != 0 }
                            ignoredD[t] += r.detectionIgnored[t].prefix(n)
                        }
                        positives += r.objectIgnored.filter { !$0 }.count
                    }
                    if positives == 0 { continue }
                    let order = Self.stableDescending(scores)
                    for t in 0..<T {
                        var tp = 0.0, fp = 0.0
                        var rc: [Double] = [], pr: [Double] = []
                        for i in order {
                            if matched[t][i] && !ignoredD[t][i] { tp += 1 }
                            if !matched[t][i] && !ignoredD[t][i] { fp += 1 }
                            rc.append(tp / Double(positives))
                            pr.append(tp / (fp + tp + 2.220446049250313e-16))  // np.spacing(1)
                        }
                        recall[((t * K + k) * A + a) * M + mi] = rc.last ?? 0
                        if pr.count > 1 { for i in stride(from: pr.count - 1, to: 0, by: -1) where pr[i] > pr[i - 1] { pr[i - 1] = pr[i] } }
                        // searchsorted(rc, recThrs, 'left'): the first recall at or past each threshold; past the end: 0.
                        var next = 0
                        for (ri, threshold) in Self.recallThresholds.enumerated() {
                            while next < rc.count && rc[next] < threshold { next += 1 }
                            precision[(((t * R + ri) * K + k) * A + a) * M + mi] = next < pr.count ? pr[next] : 0
                        }
                    }
                }
            }
        }

        // summarize()
        func mean(_ values: [Double]) -> Double {
            let defined = values.filter { $0 > -1 }
            return defined.isEmpty ? -1 : defined.reduce(0, +) / Double(defined.count)
        }
        func ap(_ t: Int?, _ a: Int, _ m: Int, categories: [Int]? = nil) -> Double {
            var values: [Double] = []
            for ti in t.map({ [$0] }) ?? Array(0..<T) {
                for r in 0..<R {
                    for k in categories ?? Array(0..<K) { values.append(precision[(((ti * R + r) * K + k) * A + a) * M + m]) }
                }
            }
            return mean(values)
        }
        func ar(_ a: Int, _ m: Int) -> Double {
            mean((0..<T).flatMap { t in (0..<K).map { k in recall[((t * K + k) * A + a) * M + m] } })
        }
        stats = [
            ap(nil, 0, 2), ap(0, 0, 2), ap(5, 0, 2), ap(nil, 1, 2), ap(nil, 2, 2), ap(nil, 3, 2),
            ar(0, 0), ar(0, 1), ar(0, 2), ar(1, 2), ar(2, 2), ar(3, 2)
        ]
        let names = Dictionary(gt.categories.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
        perCategory = categoryIds.enumerated().map { k, id in (id, names[id] ?? "\(id)", ap(nil, 0, 2, categories: [k])) }
    }
}
