import Foundation
import Images
import TestSupport
import Testing

/// `vit detect` as a user runs it on the fixture DETR: pictures and COCO-format lines, and one clear line for what
/// cannot run.
@Suite(.serialized) struct DetectCommandTests {
    let cli = CommandLineTests()
    static let model = Fixtures.url("DetectionTests", "hf-detr-r50tiny-d64-q8-e2d2")

    @Test func picturesAndCOCOLines() throws {
        let folder = try temporaryFolder("swiftvit-detect")
        defer { try? FileManager.default.removeItem(at: folder) }
        let images = (0..<2).map { Self.model.appendingPathComponent("input\($0).png").path }
        let result = try cli.vit(
            ["detect", "--model", Self.model.path, "--threshold", "0", "--precision", "fp32", "--json", "-o", folder.path] + images)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 16, "8 queries of 2 images at threshold 0")
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(images.contains(object["image_id"] as? String ?? "") && (object["bbox"] as? [Double])?.count == 4)
            #expect((object["label"] as? String)?.hasPrefix("class") == true && object["score"] is Double && object["category_id"] is Int)
        }
        for n in 0..<2 {
            let picture = try RGBImage(contentsOf: folder.appendingPathComponent("input\(n).png"))
            #expect(picture.width >= 360 && picture.height > 64)
        }
    }

    @Test func whatCannotRunIsOneLine() throws {
        let image = Self.model.appendingPathComponent("input0.png").path
        let noOutput = try cli.vit(["detect", "--model", Self.model.path, image])
        #expect(noOutput.status == 64 || noOutput.status == 2)
        #expect(noOutput.stderr.contains("-o DIR") && noOutput.stderr.contains("--json"))
        let threshold = try cli.vit(["detect", "--model", Self.model.path, "--json", "--threshold", "1.5", image])
        #expect(threshold.stderr.contains("--threshold") && threshold.status != 0)
        let missing = try cli.vit(["detect", "--model", "/nonexistent/detr", "--json", image])
        #expect(missing.status == 2 && missing.stderr.contains("/nonexistent/detr"))
        let notDETR = try cli.vit(["detect", "--model", Fixtures.url("ViTTests", "timm-vit-p8-d64-h4-l2-i32").path, "--json", image])
        #expect(notDETR.status == 2 && notDETR.stderr.contains("is not a DETR checkpoint"), "\(notDETR.stderr)")
    }
}

/// `vit eval --task detection`: a results file scored against annotations prints COCO's twelve numbers, equal to
/// pycocotools' (the fixture's coco_stats.json) to 1e-6.
@Suite struct DetectionEvalCommandTests {
    @Test func scoresAResultsFile() throws {
        let folder = DetectCommandTests.model
        let result = try CommandLineTests().vit([
            "eval", "--task", "detection", "--annotations", folder.appendingPathComponent("coco_gt.json").path,
            "--detections", folder.appendingPathComponent("coco_dt.json").path, "--json"
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let stats = try #require(object["stats"] as? [Double])
        let reference =
            try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("coco_stats.json"))) as! [String: Any]
        let expected = reference["stats"] as! [Double]
        #expect(stats.count == 12 && zip(stats, expected).allSatisfy { abs($0 - $1) < 1e-6 })
        let missing = try CommandLineTests().vit([
            "eval", "--task", "detection", "--annotations", "/nonexistent/gt.json", "--detections", "x.json"
        ])
        #expect(missing.status == 2 && missing.stderr.contains("/nonexistent/gt.json"))
    }
}

/// `vit detection-data`, `vit train --task detection`, `vit eval --task detection --data` and `vit detect` on what
/// that training wrote: the whole detection loop from the command line, on a tiny set.
@Suite(.serialized) struct DetectionLoopCommandTests {
    /// A tiny scene set at `data`: 16 training and 8 validation scenes of 48 px whose objects are a class-folder set
    /// made here (train/ and test/, two colours of square) passed as the CIFAR-10 source, so that no data set is
    /// needed.
    static func makeScenes(in root: URL, at data: String) throws {
        let objects = root.appendingPathComponent("objects")
        for part in ["train", "test"] {
            for (name, colour) in [("red", [UInt8(220), 30, 30]), ("blue", [UInt8(30), 30, 220])] {
                let folder = objects.appendingPathComponent("\(part)/\(name)")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                for i in 0..<3 {
                    let pixels = (0..<(16 * 16)).flatMap { p in colour.map { UInt8(clamping: Int($0) + (p + i) % 20) } }
                    try PNG.write(RGBImage(width: 16, height: 16, pixels: pixels), to: folder.appendingPathComponent("\(i).png"))
                }
            }
        }
        let made = try CommandLineTests().vit([
            "detection-data", "-o", data, "--train", "16", "--val", "8", "--image-size", "48", "--fashion", "none", "--cifar", objects.path
        ])
        #expect(made.status == 0, "\(made.stderr)")
    }

    @Test func generateTrainEvaluateDetect() throws {
        let cli = CommandLineTests()
        let root = try temporaryFolder("swiftvit-detection-loop")
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("scenes").path, run = root.appendingPathComponent("run").path
        try Self.makeScenes(in: root, at: data)
        let trained = try cli.vit([
            "train", "--task", "detection", "--data", data, "-o", run, "--epochs", "1", "--batch-size", "4", "--width", "16",
            "--depth", "1", "--heads", "2", "--queries", "4", "--arch", "resnet18"
        ])
        #expect(trained.status == 0, "\(trained.stderr)")
        #expect(trained.stdout.contains("\"kind\":\"train-detection\""))
        let figures = root.appendingPathComponent("figures").path
        let drawn = try cli.vit(["inspect", "curves", run, "-o", figures])
        #expect(drawn.status == 0 && FileManager.default.fileExists(atPath: figures + "/curves.png"), "\(drawn.stderr)")
        let evaluated = try cli.vit(["eval", "--task", "detection", "--data", data, "--model", run, "--json", "--precision", "fp32"])
        #expect(evaluated.status == 0 && evaluated.stdout.contains("\"stats\""), "\(evaluated.stderr)")
        let detected = try cli.vit(["detect", "--model", run, "--json", "--threshold", "0", "\(data)/val/000001.png"])
        #expect(detected.status == 0 && detected.stdout.split(separator: "\n").count == 4, "\(detected.stderr)")
        // The backbone from a timm ResNet checkpoint: its shape and weights.
        let resnet = Fixtures.url("ViTTests", "timm-resnet-basic1111-w16-i32").path
        let initialised = try cli.vit([
            "train", "--task", "detection", "--data", data, "-o", root.appendingPathComponent("init").path, "--epochs", "1",
            "--batch-size", "4", "--width", "16", "--depth", "1", "--heads", "2", "--queries", "4", "--backbone-init", resnet
        ])
        #expect(initialised.status == 0 && initialised.stderr.contains("backbone from \(resnet)"), "\(initialised.stderr)")
        let refused = try cli.vit([
            "train", "--task", "detection", "--data", data, "-o", root.appendingPathComponent("x").path, "--mixup", "0.2"
        ])
        #expect(refused.status == 2 && refused.stderr.contains("--mixup does not apply to --task detection"))
    }

    /// --init starts from a whole DETR (its class head anew when the classes differ); --log-steps writes each step
    /// once, across a stop and --resume.
    @Test func initialModelAndStepLog() throws {
        let cli = CommandLineTests()
        let root = try temporaryFolder("swiftvit-detection-init")
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("scenes").path
        try Self.makeScenes(in: root, at: data)
        // The fixture DETR has 4 classes, the scenes 2.
        let fixture = Fixtures.url("DetectionTests", "hf-detr-r50tiny-d64-q8-e2d2").path
        let run = root.appendingPathComponent("run").path
        let common = ["train", "--task", "detection", "--data", data, "-o", run, "--epochs", "1", "--batch-size", "4", "--log-steps"]
        let stopped = try cli.vit(common + ["--init", fixture, "--max-steps", "2"])
        #expect(
            stopped.status == 0 && stopped.stderr.contains("has 4 classes, the data 2: its class head starts anew"), "\(stopped.stderr)")
        let resumed = try cli.vit(common + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let lines = try String(contentsOfFile: run + "/steps.jsonl", encoding: .utf8).split(separator: "\n")
        let steps = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(steps.map { $0["step"] as? Int } == [1, 2, 3, 4])
        #expect(steps.allSatisfy { ($0["images"] as? [Int])?.count == 4 && ($0["loss"] as? Double)?.isFinite == true })
        // The images of the four steps are the epoch's 16, each once.
        #expect(Set(steps.flatMap { $0["images"] as? [Int] ?? [] }) == Set(0..<16))
        let continued = try cli.vit([
            "train", "--task", "detection", "--data", data, "-o", root.appendingPathComponent("again").path, "--epochs", "1",
            "--batch-size", "4", "--max-steps", "1", "--init", run
        ])
        #expect(continued.status == 0 && !continued.stderr.contains("starts anew"), "\(continued.stderr)")
        let reshaped = try cli.vit([
            "train", "--task", "detection", "--data", data, "-o", root.appendingPathComponent("y").path, "--init", fixture, "--width", "32"
        ])
        #expect(reshaped.status == 2 && reshaped.stderr.contains("--width cannot change it"), "\(reshaped.stderr)")
    }
}
