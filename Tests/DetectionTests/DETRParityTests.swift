import Checkpoints
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
