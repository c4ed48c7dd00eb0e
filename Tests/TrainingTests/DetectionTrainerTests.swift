import Datasets
import Detection
import Foundation
import Images
import Tensors
import TestSupport
import Testing
import Training
import ViT

/// DETR on the run loop: a tiny model on a tiny synthetic set trains, saves a folder `vit detect` reads, scores
/// itself with COCO's numbers, and resumes bit for bit.
@Suite(.serialized) struct DetectionTrainerTests {
    /// Red and blue squares on textured canvases, 48 px: 16 training and 8 validation scenes.
    static func scenes(in folder: URL) throws -> (DetectionSet, DetectionSet) {
        func square(_ colour: [UInt8]) -> RGBImage { RGBImage(width: 8, height: 8, pixels: Array((0..<64).map { _ in colour }.joined())) }
        let source = SyntheticScenes.Source(
            name: "shapes", images: [square([230, 30, 30]), square([30, 30, 230])], labels: [0, 1], classNames: ["red", "blue"],
            masked: false)
        var scenes = SyntheticScenes(sources: [source])
        (scenes.canvasSize, scenes.maxObjects, scenes.objectSizes, scenes.seed) = (48, 3, 10...20, 5)
        try scenes.write(to: folder, counts: [("train", 16), ("val", 8)])
        return (try DetectionSet.load(folder, part: .train), try DetectionSet.load(folder, part: .test))
    }

    /// A source drawn from a set read class by class (as an image folder is) covers every class, the same for the
    /// same seed.
    @Test func sourcesSampleEveryClass() {
        let perClass = 100
        let labels = (0..<10).flatMap { [Int](repeating: $0, count: perClass) }
        let set = ImageDataset(
            width: 1, height: 1, pixels: labels.flatMap { [UInt8($0), 0, 0] }, labels: labels, classNames: (0..<10).map { "c\($0)" })
        let source = SyntheticScenes.Source(name: "s", sampling: set, limit: 50, seed: 3, masked: false)
        #expect(source.images.count == 50 && Set(source.labels) == Set(0..<10), "\(source.labels)")
        // Each image keeps its own label.
        #expect(zip(source.images, source.labels).allSatisfy { Int($0.pixels[0]) == $1 })
        #expect(SyntheticScenes.Source(name: "s", sampling: set, limit: 50, seed: 3, masked: false).labels == source.labels)
    }

    static func model(seed: UInt64) throws -> DETR {
        var config = DETRConfig()
        config.backbone.block = .basic
        (config.backbone.layers, config.backbone.channels, config.backbone.stemWidth) = ([1, 1, 1, 1], [8, 8, 16, 16], 8)
        config.backbone.imageSize = 48
        (config.width, config.heads, config.encoderLayers, config.decoderLayers, config.feedForward, config.queries) = (32, 2, 1, 2, 64, 6)
        (config.classNames, config.auxiliaryLoss) = (["red", "blue"], true)
        return try GlobalRandom.using(RandomStream(SeededGenerator(seed: seed))) { try DETR(config) }
    }

    static func options() -> DetectionOptions {
        var options = DetectionOptions()
        (options.epochs, options.batchSize, options.learningRate, options.seed) = (3, 4, 1e-3, 7)
        return options
    }

    @Test func trainsSavesEvaluatesAndResumesExactly() throws {
        let root = try temporaryFolder("swiftvit-detr-train")
        defer { try? FileManager.default.removeItem(at: root) }
        let (train, val) = try Self.scenes(in: root.appendingPathComponent("data"))
        #expect(train.images.count == 16 && train.targets.allSatisfy { !$0.labels.isEmpty })

        let whole = root.appendingPathComponent("whole")
        let trainer = try DetectionTrainer(
            model: try Self.model(seed: 1), options: Self.options(), data: train, validation: val, folder: whole)
        #expect(try trainer.run() == .finished)
        let history = trainer.state.history
        #expect(history.count == 3 && history.allSatisfy { $0.loss.isFinite && $0.ap != nil })
        #expect(history.last!.loss < history.first!.loss, "loss \(history.map(\.loss))")
        for file in [
            "model.safetensors", "config.json", "preprocessor_config.json", "metrics.jsonl", "curves.png", "checkpoint.safetensors"
        ] {
            #expect(FileManager.default.fileExists(atPath: whole.appendingPathComponent(file).path), "\(file)")
        }
        let metrics = try String(contentsOf: whole.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        #expect(metrics.hasPrefix("{\"kind\":\"train-detection\""))
        // The saved folder loads as a DETR with the data's class names, and scores as the trainer did.
        let loaded = try DETRCheckpoint.load(whole)
        #expect(loaded.config.classNames == ["red", "blue"] && loaded.config.queries == 6)

        // Stopped after 5 steps and resumed: the same weights as the run that never stopped.
        let stopped = root.appendingPathComponent("stopped")
        let first = try DetectionTrainer(
            model: try Self.model(seed: 1), options: Self.options(), data: train, validation: val, folder: stopped)
        first.stepLimit = 5
        #expect(try first.run() == .stopped)
        let resumed = try DetectionTrainer.resume(folder: stopped, data: train, validation: val)
        #expect(try resumed.run() == .finished)
        let a = trainer.model.stateDict(), b = resumed.model.stateDict()
        #expect(a.keys.sorted() == b.keys.sorted())
        #expect(a.keys.allSatisfy { a[$0]!.toArray() == b[$0]!.toArray() }, "weights differ after resume")
        #expect(resumed.state.history.map(\.loss) == history.map(\.loss))
    }

    /// Annotations a detection set cannot train on: one error naming the file and the entry.
    @Test func badAnnotationsNameTheEntry() throws {
        let root = try temporaryFolder("swiftvit-detr-bad")
        defer { try? FileManager.default.removeItem(at: root) }
        _ = try Self.scenes(in: root)
        let url = root.appendingPathComponent("instances_train.json")
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        for (edit, reason) in [
            ({ (a: inout [String: Any]) in a["bbox"] = [40, 40, 30, 30] }, "is outside its image"),
            ({ (a: inout [String: Any]) in a["bbox"] = [4, 4, 0, 10] }, "zero area")
        ] as [((inout [String: Any]) -> Void, String)] {
            var json = original
            var annotations = json["annotations"] as! [[String: Any]]
            edit(&annotations[0])
            json["annotations"] = annotations
            try JSONSerialization.data(withJSONObject: json).write(to: url)
            #expect { try DetectionSet.load(root, part: .train) } throws: { "\($0)".contains(url.path) && "\($0)".contains(reason) }
        }
    }
}
