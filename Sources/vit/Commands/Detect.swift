import ArgumentParser
import Detection
import Foundation
import Images
import Tensors

/// Objects in photos, with DETR.
struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detect objects in images with a DETR checkpoint.",
        discussion:
            "The model is a Hugging Face DetrForObjectDetection folder (config.json, model.safetensors, preprocessor_config.json) or a facebookresearch/detr .pth. Each image is processed as DetrImageProcessor does (resize, normalise) and run alone; with -o its picture with the boxes, class names and scores goes to DIR/<name>.png, with --json one line per detection in COCO's results format. A bad image is reported on stderr and skipped; the exit status is 1 if some failed, 2 if all did."
    )

    @Option(help: "DETR checkpoint: a Hugging Face folder or a facebookresearch/detr .pth.") var model: String
    @Option(name: .shortAndLong, help: "Folder for the pictures (one PNG per image).") var output: String?
    @Option(help: "Keep the detections scoring above this (the class probability), in [0, 1).") var threshold: Float = 0.5
    @Option(help: "Compute precision (default: bf16 where the CPU has AVX512-BF16 or AMX, else fp32).")
    var precision: Precision?
    @Flag(help: "One JSON object per detection: image_id (the path), category_id, bbox [x, y, width, height] in pixels, score, label.")
    var json = false
    @OptionGroup var imageLimit: ImageLimitOptions
    @Argument(help: "Image files or folders.") var images: [String]

    func validate() throws {
        if !(threshold >= 0 && threshold < 1) { throw ValidationError("--threshold must be in [0, 1), got \(threshold)") }
        try Precision.refuseInt8(precision, in: "detection")
        if output == nil && !json { throw ValidationError("give -o DIR for the pictures, --json for the detections, or both") }
    }

    func run() throws {
        imageLimit.apply()
        let (files, missing) = try imageFiles(images)
        let detr = try DETRCheckpoint.load(try BuiltInModel.resolve(model))
        let chosen = Precision.decideAndSay(precision)
        let preprocessing = DETRPreprocessing(detr.config)
        if let output {
            do {
                try FileManager.default.createDirectory(at: URL(fileURLWithPath: output), withIntermediateDirectories: true)
            } catch {
                throw CommandFailure("\(output): cannot be created (\(error.localizedDescription))")
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        var failures = missing, found = 0
        let started = Date()
        for file in files {
            let image: RGBImage
            do { image = try RGBImage(contentsOf: file) } catch {
                printError("error: \(error)")
                failures += 1
                continue
            }
            let (pixels, mask, _) = preprocessing([image])
            let detections = Autograd.withNoGrad {
                Autocast.run(chosen.dtype) { detr(pixels, mask: mask) }.detections(
                    sizes: [(image.height, image.width)], threshold: threshold)
            }[0]
            found += detections.count
            if json {
                for d in detections {
                    let record = COCODetection(
                        imageId: file.path, categoryId: d.label, bbox: [d.box.x0, d.box.y0, d.box.x1 - d.box.x0, d.box.y1 - d.box.y0],
                        score: d.score,
                        label: detr.config.classNames.indices.contains(d.label) ? detr.config.classNames[d.label] : "\(d.label)")
                    print(String(decoding: try encoder.encode(record), as: UTF8.self))
                }
            }
            if let output {
                let title = "\(file.lastPathComponent): \(detections.count) above \(threshold)"
                let picture = DetectionPicture.draw(image, detections: detections, classNames: detr.config.classNames, title: title)
                let name = file.deletingPathExtension().lastPathComponent + ".png"
                try PNG.write(picture, to: URL(fileURLWithPath: output).appendingPathComponent(name))
            }
        }
        printError(
            "\(found) detections in \(files.count - (failures - missing)) images in \(String(format: "%.2f", Date().timeIntervalSince(started))) s"
                + (output.map { "; pictures in \($0)" } ?? ""))
        try finish(failed: failures, of: files.count + missing)
    }
}

/// One detection as a line of COCO's results format, with the class name beside its id.
struct COCODetection: Encodable {
    let imageId: String
    let categoryId: Int
    let bbox: [Float]
    let score: Float
    let label: String

    enum CodingKeys: String, CodingKey {
        case bbox, score, label
        case imageId = "image_id", categoryId = "category_id"
    }
}
