import Foundation
import TestSupport
import Testing

@testable import Detection

/// COCO's twelve numbers against pycocotools' `COCOeval(gt, dt, 'bbox').summarize()` on the fixture's case.
@Suite struct COCOEvaluationTests {
    static let folder = Fixtures.url("DetectionTests", "hf-detr-r50tiny-d64-q8-e2d2")

    @Test func statsEqualPycocotools() throws {
        let gt = try COCOAnnotations(contentsOf: Self.folder.appendingPathComponent("coco_gt.json"))
        let dt = try COCOResults(contentsOf: Self.folder.appendingPathComponent("coco_dt.json"), for: gt)
        let evaluation = COCOEvaluation(annotations: gt, results: dt)
        let reference =
            try JSONSerialization.jsonObject(with: Data(contentsOf: Self.folder.appendingPathComponent("coco_stats.json")))
            as! [String: Any]
        let expected = reference["stats"] as! [Double]
        #expect(evaluation.stats.count == 12)
        for (i, (ours, theirs)) in zip(evaluation.stats, expected).enumerated() {
            #expect(abs(ours - theirs) < 1e-6, "\(COCOEvaluation.statNames[i]): \(ours) vs \(theirs)")
        }
        #expect(evaluation.perCategory.map(\.id) == [1, 2, 3])
    }

    /// Files that are not COCO, and entries naming what the file does not list: one error naming the file and entry.
    @Test func badAnnotationFilesNameTheEntry() throws {
        let folder = try temporaryFolder("swiftvit-coco")
        defer { try? FileManager.default.removeItem(at: folder) }
        let good: [String: Any] = [
            "images": [["id": 1, "width": 10, "height": 10]], "categories": [["id": 1, "name": "a"]],
            "annotations": [["id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0]]
        ]
        func write(_ name: String, _ edit: (inout [String: Any]) -> Void) throws -> URL {
            var json = good
            edit(&json)
            let url = folder.appendingPathComponent(name)
            try JSONSerialization.data(withJSONObject: json).write(to: url)
            return url
        }
        func annotation(_ key: String, _ value: Any) -> (inout [String: Any]) -> Void {
            { json in
                var a = (json["annotations"] as! [[String: Any]])[0]
                a[key] = value
                json["annotations"] = [a]
            }
        }
        for (name, edit, reason) in [
            ("list.json", { (j: inout [String: Any]) in j = ["not": "coco"] }, "is not a COCO annotation file"),
            ("image.json", annotation("image_id", 7), "annotations[0] (id 1) names image 7"),
            ("category.json", annotation("category_id", 9), "category_id 9, which categories does not list"),
            ("box.json", annotation("bbox", [1, 2]), "no bbox of four numbers")
        ] as [(String, (inout [String: Any]) -> Void, String)] {
            let url = try write(name, edit)
            #expect { try COCOAnnotations(contentsOf: url) } throws: { "\($0)".contains(url.path) && "\($0)".contains(reason) }
        }
        let gt = try COCOAnnotations(contentsOf: try write("good.json", { _ in }))
        let results = folder.appendingPathComponent("results.json")
        try JSONSerialization.data(withJSONObject: [["image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5]]).write(
            to: results)
        #expect { try COCOResults(contentsOf: results, for: gt) } throws: { "\($0)".contains("names image 5") }
    }
}
