import Checkpoints
import Foundation
import Images
import Inference
import Tensors
import TestSupport
import Testing
import ViT

/// The fixtures of the other test targets, read where they are.
let testsFolder = Fixtures.tests
let timmFolder = testsFolder.appendingPathComponent("ViTTests/Fixtures/timm-vit-p8-d64-h4-l2-i32")

@Suite struct ClassifierTests {
    /// Photo file -> decode -> timm's transform (32 px, crop 1.0, mean = std = 0.5) -> model gives timm's logits.
    @Test func photoToLogitsMatchesTimm() throws {
        let classifier = try Classifier(checkpoint: timmFolder)
        let reference = try SafetensorsFile(contentsOf: timmFolder.appendingPathComponent("reference.safetensors"))
        let images = try ["input0.png", "input1.png"].map { try RGBImage(contentsOf: timmFolder.appendingPathComponent($0)) }
        let logits = classifier.logits(classifier.batch(images))
        let worst = zip(logits.toArray(), try reference.tensor("logits").toArray()).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-4, "logits differ from timm's by \(worst)")
        let top = try classifier.classify(timmFolder.appendingPathComponent("input0.png"), top: 3)
        let expected = try reference.tensor("logits").toArray()[0..<10]
        #expect(top.map(\.index) == Array(expected.indices.sorted { expected[$0] > expected[$1] }.prefix(3)))
        #expect(top.map(\.probability) == top.map(\.probability).sorted(by: >))
    }

    @Test func labelsComeFromTheCheckpointElseImageNetElseIndices() throws {
        let hf = try Classifier(checkpoint: testsFolder.appendingPathComponent("ViTTests/Fixtures/hf-vit-p8-d64-h4-l2-i32"))
        #expect(hf.labels.first == "LABEL_0" && hf.labels.count == 10)
        #expect(try Classifier(checkpoint: timmFolder).labels == (0..<10).map(String.init))
        var config = try ViTConfig.preset("vit_tiny_patch16_224")
        config.depth = 1
        #expect(Classifier(model: try VisionTransformer(config)).labels[281] == "tabby, tabby cat")
    }

    @Test func loaderSkipsBadFilesAndKeepsOrder() throws {
        let decode = testsFolder.appendingPathComponent("ImagesTests/Fixtures/decode")
        let paths = ["rgb.png", "truncated.jpg", "gray.jpg", "not-an-image.jpg", "palette.png"].map {
            decode.appendingPathComponent($0).path
        }
        let (files, missing) = BatchLoader.imageFiles(paths + ["/nonexistent/photo.jpg"])
        #expect(files.count == 5 && missing.count == 1 && "\(missing[0])".contains("no such file"))
        let transform = EvalTransform(size: 16)
        for background in [true, false] {
            let batches = Array(BatchLoader(files: files, batchSize: 2, background: background) { transform($0) })
            #expect(batches.flatMap(\.files).map(\.lastPathComponent) == ["rgb.png", "gray.jpg", "palette.png"])
            #expect(batches.flatMap(\.failures).map(\.url.lastPathComponent) == ["truncated.jpg", "not-an-image.jpg"])
            #expect(batches.compactMap(\.images).map { $0.shape[0] } == [1, 1, 1])
        }
        let folder = BatchLoader.imageFiles([decode.path]).files.map(\.lastPathComponent)
        #expect(folder.contains("rgb16.png") && !folder.contains("expected.safetensors") && folder == folder.sorted())
    }
}
