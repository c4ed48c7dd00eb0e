import ArgumentParser
import Datasets
import Detection
import Foundation
import Images
import Tensors

/// What a model does (`vit train --task`, `vit eval --task`).
enum ModelTask: String, ExpressibleByArgument, CaseIterable {
    case classification, detection, generation
}

extension Eval {
    /// COCO's twelve numbers (and each category's AP) for a results file against annotations, or for a DETR --model
    /// run on an annotated --data folder.
    func evaluateDetection() throws {
        let truth: COCOAnnotations, results: COCOResults
        if let annotations, let detections {
            truth = try COCOAnnotations(contentsOf: URL(fileURLWithPath: annotations))
            results = try COCOResults(contentsOf: URL(fileURLWithPath: detections), for: truth)
        } else {
            let folder = URL(fileURLWithPath: data ?? ".")
            let names = part == .train ? ["instances_train.json"] : ["instances_val.json", "instances_test.json"]
            guard
                let file = names.map({ folder.appendingPathComponent($0) }).first(where: { FileManager.default.fileExists(atPath: $0.path) }
                )
            else { throw CommandFailure("\(folder.path) has no \(names.joined(separator: " or ")) (COCO annotations beside the images)") }
            truth = try COCOAnnotations(contentsOf: file)
            results = try detect(truth, in: folder)
        }
        let evaluation = COCOEvaluation(annotations: truth, results: results)
        if json {
            var perClass: [String: Double] = [:]
            for c in evaluation.perCategory { perClass[c.name] = c.ap }
            let object: [String: Any] = [
                "stats": evaluation.stats, "names": COCOEvaluation.statNames, "per_class": perClass, "images": truth.images.count,
                "detections": results.detections.count
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let labels = [
            "AP @[IoU=0.50:0.95 | area=   all | maxDets=100]", "AP @[IoU=0.50      | area=   all | maxDets=100]",
            "AP @[IoU=0.75      | area=   all | maxDets=100]", "AP @[IoU=0.50:0.95 | area= small | maxDets=100]",
            "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]", "AP @[IoU=0.50:0.95 | area= large | maxDets=100]",
            "AR @[IoU=0.50:0.95 | area=   all | maxDets=  1]", "AR @[IoU=0.50:0.95 | area=   all | maxDets= 10]",
            "AR @[IoU=0.50:0.95 | area=   all | maxDets=100]", "AR @[IoU=0.50:0.95 | area= small | maxDets=100]",
            "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]", "AR @[IoU=0.50:0.95 | area= large | maxDets=100]"
        ]
        for (label, value) in zip(labels, evaluation.stats) { print(" Average \(label) = \(String(format: "%.3f", value))") }
        print("per-category AP @[IoU=0.50:0.95 | area=all | maxDets=100]:")
        for c in evaluation.perCategory { print("  \(c.name) (\(c.id)): \(String(format: "%.3f", c.ap))") }
    }

    /// The DETR --model's detections of every image `truth` lists (its file_name under `folder`), each query's best
    /// class above no threshold, in COCO's results format; model class i is the i-th category by id.
    func detect(_ truth: COCOAnnotations, in folder: URL) throws -> COCOResults {
        let detr = try DETRCheckpoint.load(try BuiltInModel.resolve(modelOptions.model))
        let categories = truth.categories.map(\.id).sorted()
        guard detr.config.classCount == categories.count else {
            throw CommandFailure("the model has \(detr.config.classCount) classes, the annotations \(categories.count) categories")
        }
        try Precision.refuseInt8(modelOptions.precision, in: "detection")
        let chosen = Precision.decideAndSay(modelOptions.precision)
        let preprocessing = DETRPreprocessing(detr.config)
        let bar = ProgressBar(total: truth.images.count, unit: "img")
        var found: [COCOResults.Detection] = []
        for image in truth.images {
            guard let name = image.fileName else { throw CommandFailure("image \(image.id) has no file_name") }
            let picture = try RGBImage(contentsOf: folder.appendingPathComponent(name))
            let (pixels, mask, _) = preprocessing([picture])
            let detections = Autograd.withNoGrad {
                Autocast.run(chosen.dtype) { detr(pixels, mask: mask) }.detections(sizes: [(picture.height, picture.width)], threshold: 0)
            }[0]
            for d in detections {
                found.append(
                    .init(
                        imageId: image.id, categoryId: categories[d.label],
                        bbox: [Double(d.box.x0), Double(d.box.y0), Double(d.box.x1 - d.box.x0), Double(d.box.y1 - d.box.y0)],
                        score: Double(d.score)))
            }
            bar.advance(by: 1)
        }
        return COCOResults(found)
    }
}
