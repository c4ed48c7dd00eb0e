import Checkpoints
import Images
import Foundation
import Tensors
import TestSupport
import Testing

@testable import Detection

/// The fixture DETR (`Fixtures/hf-detr-r50tiny-d64-q8-e2d2`, transformers' `DetrForObjectDetection` with a reduced
/// ResNet-50): a padded batch of two through the model read from Hugging Face's folder and from
/// facebookresearch/detr's `.pth`, against transformers' outputs.
@Suite struct DETRParityTests {
    static let folder = Fixtures.url("DetectionTests", "hf-detr-r50tiny-d64-q8-e2d2")
    static let reference = try! SafetensorsFile(contentsOf: folder.appendingPathComponent("reference.safetensors"))

    /// The fixture's padded batch: pixel values [2, 3, 64, 96] and the mask [2][64][96] (true on the image).
    static func batch() throws -> (Tensor, [[[Bool]]]) {
        let images = try reference.tensor("pixel_values")
        let flags = try reference.integers("pixel_mask")
        let (b, h, w) = (images.shape[0], images.shape[2], images.shape[3])
        let mask = (0..<b).map { n in (0..<h).map { y in (0..<w).map { x in flags[(n * h + y) * w + x] != 0 } } }
        return (images, mask)
    }

    static func expectClose(_ actual: Tensor, _ name: String, tolerance: Float = 1e-4, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        let expected = try reference.tensor(name)
        #expect(actual.shape == expected.shape, "\(name): \(actual.shape) vs \(expected.shape)", sourceLocation: sourceLocation)
        guard actual.shape == expected.shape else { return }
        let difference = zip(actual.toArray(), expected.toArray()).map { abs($0 - $1) }.max() ?? 0
        #expect(difference < tolerance, "\(name): largest difference \(difference)", sourceLocation: sourceLocation)
    }

    @Test(arguments: ["model.safetensors", "detr_original.pth"])
    func outputsMatchTransformers(weights: String) throws {
        let model = try DETRCheckpoint.load(Self.folder.appendingPathComponent(weights == "model.safetensors" ? "" : weights))
        #expect(model.config.width == 64 && model.config.heads == 4 && model.config.queries == 8 && model.config.classCount == 4)
        #expect(model.config.backbone.block == .bottleneck && model.config.backbone.channels == [8, 16, 32, 64])
        let (images, mask) = try Self.batch()
        let output = Autograd.withNoGrad { model(images, mask: mask) }
        try Self.expectClose(output.encoderLastHiddenState, "encoder_last_hidden_state")
        try Self.expectClose(output.lastHiddenState, "last_hidden_state")
        try Self.expectClose(output.logits, "logits")
        try Self.expectClose(output.boxes, "pred_boxes")
        try Self.expectClose(output.layers[0].logits, "aux.0.logits")
        try Self.expectClose(output.layers[0].boxes, "aux.0.pred_boxes")
    }
}

/// Training DETR against transformers' `DetrLoss`: the Hungarian matching, every loss term of the last and the
/// auxiliary layer, the total, and the gradient of every trainable parameter.
@Suite struct DETRLossTests {
    typealias P = DETRParityTests

    static func targets() throws -> [DetectionTarget] {
        try (0..<2).map { n in
            let labels = try P.reference.integers("target.\(n).class_labels")
            return DetectionTarget(labels: labels, boxes: Box.rows(try P.reference.tensor("target.\(n).boxes")))
        }
    }

    static func scalar(_ name: String) throws -> Float { try P.reference.tensor(name).toArray()[0] }

    /// transformers' matching of the last decoder layer.
    static func referenceMatches() throws -> [[(query: Int, target: Int)]] {
        try (0..<2).map { n in
            Array(zip(try P.reference.integers("match.\(n).query"), try P.reference.integers("match.\(n).target"))).map {
                (query: $0.0, target: $0.1)
            }
        }
    }

    @Test func matchingAndLossesMatchTransformers() throws {
        let model = try DETRCheckpoint.load(P.folder)
        let (images, mask) = try P.batch()
        let output = Autograd.withNoGrad { model(images, mask: mask) }
        let (total, layers) = Autograd.withNoGrad { DETRLoss()(output, targets: try! Self.targets()) }
        let last = try #require(layers.last)
        // The matcher on transformers' own outputs gives transformers' matching (on ours, which differ by 1e-7, an
        // untrained model's near-equal query costs may pair differently at the same total cost).
        let matched = HungarianMatcher().match(
            logits: try P.reference.tensor("logits"), boxes: try P.reference.tensor("pred_boxes"), targets: try Self.targets())
        #expect(matched.map { $0.map(\.query) } == (try Self.referenceMatches().map { $0.map(\.query) }))
        #expect(matched.map { $0.map(\.target) } == (try Self.referenceMatches().map { $0.map(\.target) }))
        #expect(last.matches.map(\.count) == [2, 3])
        for (suffix, terms) in [("", last), ("_0", layers[0])] {
            #expect(abs(terms.crossEntropy.toArray()[0] - (try Self.scalar("loss_dict.loss_ce\(suffix)"))) < 1e-4, "loss_ce\(suffix)")
            #expect(abs(terms.l1.toArray()[0] - (try Self.scalar("loss_dict.loss_bbox\(suffix)"))) < 1e-4, "loss_bbox\(suffix)")
            #expect(abs(terms.giou.toArray()[0] - (try Self.scalar("loss_dict.loss_giou\(suffix)"))) < 1e-4, "loss_giou\(suffix)")
            #expect(terms.cardinalityError == (try Self.scalar("loss_dict.cardinality_error\(suffix)")), "cardinality_error\(suffix)")
        }
        #expect(abs(total.toArray()[0] - (try Self.scalar("loss"))) < 1e-4)
    }

    /// Every trainable parameter's gradient within 1e-4 of its largest value; the frozen ones (the stem, the first
    /// stage, every batch norm) get none.
    @Test func gradientsMatchTransformers() throws {
        let model = try DETRCheckpoint.load(P.folder)
        model.train()
        let (images, mask) = try P.batch()
        let output = model(images, mask: mask)
        // The last layer matched as transformers matched it (the fixture's matching: on an untrained model, query
        // costs 1e-7 apart pair by noise); the auxiliary layer by the matcher.
        let (total, _) = DETRLoss()(output, targets: try Self.targets(), matches: [output.layers.count - 1: try Self.referenceMatches()])
        total.backward()
        let expected = P.reference.entries.keys.filter { $0.hasPrefix("grad.") }
        #expect(expected.count > 100)
        var trainable = 0
        // A few tensors' gradients are four orders below the rest (the first decoder layer's cross-attention q and
        // k, the query positions: 1e-5 against 0.08, a near-cancelling sum); for them float32 noise of 5e-7 is most
        // of 1e-4 of their own largest value, so their tolerance is 1e-4 of 1% of the model's largest gradient.
        let largest = try expected.map { try P.reference.tensor($0).toArray().map(abs).max() ?? 0 }.max() ?? 0
        for (name, parameter) in model.namedParameters() {
            guard let reference = expected.contains("grad." + name) ? try P.reference.tensor("grad." + name) : nil else {
                #expect(!parameter.requiresGrad, "\(name) is trained but transformers gives it no gradient")
                continue
            }
            trainable += 1
            let grad = try #require(parameter.grad, "\(name) has no gradient")
            let scale = reference.toArray().map(abs).max() ?? 0
            let difference = zip(grad.toArray(), reference.toArray()).map { abs($0 - $1) }.max() ?? 0
            #expect(difference <= 1e-4 * max(scale, 0.01 * largest), "\(name): difference \(difference) of largest \(scale)")
        }
        #expect(trainable == expected.count)
    }
}

/// Post-processing as transformers' `post_process_object_detection` (threshold 0: every query).
@Suite struct DETRDetectionsTests {
    typealias P = DETRParityTests

    @Test func detectionsMatchTransformers() throws {
        let model = try DETRCheckpoint.load(P.folder)
        let (images, mask) = try P.batch()
        let output = Autograd.withNoGrad { model(images, mask: mask) }
        // Each image's own size: the unpadded extent of its mask.
        let sizes = mask.map { image in (height: image.filter { $0.contains(true) }.count, width: image[0].filter { $0 }.count) }
        let detections = output.detections(sizes: sizes, threshold: 0)
        for n in 0..<2 {
            let scores = try P.reference.tensor("post.\(n).scores").toArray(), labels = try P.reference.integers("post.\(n).labels")
            let boxes = try P.reference.tensor("post.\(n).boxes").toArray()
            #expect(detections[n].count == scores.count)
            #expect(detections[n].map(\.label) == labels, "image \(n) labels")
            for (i, d) in detections[n].enumerated() {
                #expect(abs(d.score - scores[i]) < 1e-4, "image \(n) query \(i) score")
                let box = [d.box.x0, d.box.y0, d.box.x1, d.box.y1]
                #expect(zip(box, boxes[(4 * i)..<(4 * i + 4)]).allSatisfy { abs($0 - $1) < 1e-4 }, "image \(n) query \(i) box \(box)")
            }
        }
    }
}

/// `DetrImageProcessor` (shortest edge 64, longest 96) on the fixture's PNGs, and the detections the model makes of
/// them through it.
@Suite struct DETRPreprocessingTests {
    typealias P = DETRParityTests

    @Test func resizeNormalisePadAndMaskMatchTransformers() throws {
        let model = try DETRCheckpoint.load(P.folder)
        #expect(model.config.shortestEdge == 64 && model.config.longestEdge == 96)
        let images = try (0..<2).map { try RGBImage(contentsOf: P.folder.appendingPathComponent("input\($0).png")) }
        let (pixels, mask, sizes) = DETRPreprocessing(model.config)(images)
        let reference = try SafetensorsFile(contentsOf: P.folder.appendingPathComponent("preprocess.safetensors"))
        let expected = try reference.tensor("pixel_values")
        #expect(pixels.shape == expected.shape)
        let difference = zip(pixels.toArray(), expected.toArray()).map { abs($0 - $1) }.max() ?? 1
        #expect(difference < 1e-4, "pixel values differ by \(difference)")
        #expect(mask.flatMap { $0.flatMap { $0.map { $0 ? 1 : 0 } } } == (try reference.integers("pixel_mask")))

        let output = Autograd.withNoGrad { model(pixels, mask: mask) }
        // Boxes in each PNG's own pixels: the relative boxes scaled by the original size.
        let detections = output.detections(sizes: images.map { ($0.height, $0.width) }, threshold: 0)
        let expectedDetections = try SafetensorsFile(contentsOf: P.folder.appendingPathComponent("detections.safetensors"))
        for n in 0..<2 {
            #expect(detections[n].map(\.label) == (try expectedDetections.integers("png.\(n).labels")))
            let scores = try expectedDetections.tensor("png.\(n).scores").toArray()
            let boxes = try expectedDetections.tensor("png.\(n).boxes").toArray()
            for (i, d) in detections[n].enumerated() {
                #expect(abs(d.score - scores[i]) < 1e-4)
                #expect(zip([d.box.x0, d.box.y0, d.box.x1, d.box.y1], boxes[(4 * i)..<(4 * i + 4)]).allSatisfy { abs($0 - $1) < 1e-4 })
            }
        }
        #expect(sizes.count == 2)
    }
}

/// facebookresearch/detr tensors that cannot be what they claim: one error, never a trap.
@Suite struct DETRHostileCheckpointTests {
    @Test func inProjectionsOfTheWrongRankAreRefused() {
        for shape in [[Int](), [7], [3, 4, 5]] {
            let tensors = ["transformer.encoder.layers.0.self_attn.in_proj_weight": Tensor.zeros(shape)]
            #expect(throws: (any Error).self, "\(shape)") { try DETRCheckpoint.fromOriginal(tensors) }
        }
        #expect(throws: (any Error).self) { try DETRCheckpoint.fromOriginal(["something.else": Tensor.zeros([1])]) }
    }
}
