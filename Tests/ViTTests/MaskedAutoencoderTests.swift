import Checkpoints
import Foundation
import NN
import Tensors
import Testing
@testable import ViT

/// MAE against facebookresearch/mae and Hugging Face `ViTMAEForPreTraining` (`../shared/fixtures/mae-official-*`,
/// `hf-vit-mae-*`): with the fixture's noise, the mask, the encoder output, the decoder's predictions, both losses
/// and every parameter's gradient.
@Suite struct MaskedAutoencoderTests {
    static let official = "mae-official-p8-d64-l2-i32"

    func officialModel() throws -> MaskedAutoencoder {
        try MAECheckpoint.load(fixture(Self.official).appendingPathComponent("checkpoint-199.pth"), heads: 4, decoderHeads: 4)
    }

    /// Mask, restore order, encoder output, predictions and loss of one model against the reference.
    func checkForward(_ model: MaskedAutoencoder, loss variant: String) throws {
        let ref = try reference(Self.official)
        let noise = try ref.tensor("noise")
        let mask = PatchMask(noise: noise, keep: model.config.keptPatches)
        #expect(mask.keep.allSatisfy { $0.count == 4 })
        expectWithin(mask.tensor, try ref.tensor("mask"), 0, "mask")
        #expect(mask.restore.flatMap { $0 } == (try ref.integers("ids_restore")), "ids_restore")
        let images = try ref.tensor("input")
        let outputs = Autograd.withNoGrad { model.forward(images, mask: mask) }
        expectWithin(outputs.latent, try ref.tensor("encoder_last_hidden_state"), 1e-4, "encoder output")
        expectWithin(outputs.prediction, try ref.tensor("\(variant).logits"), 1e-4, "\(variant) predictions")
        let loss = Autograd.withNoGrad { model.reconstructionLoss(images, prediction: outputs.prediction, mask: mask) }
        expectWithin(loss.loss.reshape([1]), try ref.tensor("\(variant).loss"), 1e-4, "\(variant) loss")
        #expect(abs(loss.perImage.reduce(0, +) / 2 - loss.loss.item()) < 1e-5, "each image removes as many patches")
    }

    @Test func officialCheckpointMatchesReference() throws {
        let model = try officialModel()
        #expect(model.config.decoderWidth == 48 && model.config.decoderDepth == 2 && !model.config.lossPredictor)
        try checkForward(model, loss: "pix")
        var normPix = model.config
        normPix.normPixLoss = true  // the official file does not say; main_pretrain.py's --norm_pix_loss does
        let withNormPix = try MaskedAutoencoder(normPix)
        try withNormPix.load(stateDict: model.stateDict())
        try checkForward(withNormPix, loss: "normpix")
    }

    @Test func huggingFaceFoldersMatchReference() throws {
        let pix = try MAECheckpoint.load(fixture("hf-vit-mae-pix-p8-d64-l2-i32"))
        #expect(!pix.config.normPixLoss && pix.config.decoderHeads == 4 && pix.config.encoder.heads == 4)
        try checkForward(pix, loss: "pix")
        let normPix = try MAECheckpoint.load(fixture("hf-vit-mae-normpix-p8-d64-l2-i32"))
        #expect(normPix.config.normPixLoss)
        try checkForward(normPix, loss: "normpix")
    }

    /// d normpix.loss / d parameter for all 60 parameters, each within 1e-4 of its largest magnitude.
    @Test func gradientsMatchReference() throws {
        let model = try MAECheckpoint.load(fixture("hf-vit-mae-normpix-p8-d64-l2-i32"))
        model.train()
        let ref = try reference(Self.official)
        let images = try ref.tensor("input")
        let mask = PatchMask(noise: try ref.tensor("noise"), keep: model.config.keptPatches)
        let outputs = model.forward(images, mask: mask)
        model.reconstructionLoss(images, prediction: outputs.prediction, mask: mask).loss.backward()
        var checked = 0
        for (name, parameter) in model.namedParameters() {
            let expected = try ref.tensor("grad.\(name)")
            let scale = max(expected.toArray().map(abs).max() ?? 0, 1e-12)
            let worst = zip(parameter.grad!.toArray(), expected.toArray()).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-4 * scale, "grad.\(name): max difference \(worst), scale \(scale)")
            checked += 1
        }
        #expect(checked == 60 && checked == ref.names.filter { $0.hasPrefix("grad.") }.count)
    }

    /// The encoder of the full checkpoint is the released encoder-only file, as a ViT.
    @Test func encoderIsTheReleasedEncoder() throws {
        let encoder = try officialModel().encoderModel()
        let released = try CheckpointLoader(heads: 4).load(fixture(Self.official).appendingPathComponent("mae_pretrain_encoder.pth"))
        let mine = encoder.stateDict()
        for (name, tensor) in released.stateDict() { expectWithin(mine[name]!, tensor, 0, name) }
        #expect(mine.count == released.stateDict().count)
    }

    /// Saved and loaded again, through the native folder: the same predictions.
    @Test func nativeFolderRoundTrip() throws {
        let model = try officialModel()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mae-roundtrip-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try MAECheckpoint.save(model, to: folder)
        let again = try MAECheckpoint.load(folder)
        #expect(again.config == model.config)
        let ref = try reference(Self.official)
        let mask = PatchMask(noise: try ref.tensor("noise"), keep: 4)
        let (a, b) = Autograd.withNoGrad {
            (model.forward(try! ref.tensor("input"), mask: mask).prediction, again.forward(try! ref.tensor("input"), mask: mask).prediction)
        }
        expectWithin(a, b, 0, "predictions after a round trip")
        // The encoder reads as a ViT (decoder tensors dropped), as vit embed and vit inspect load it.
        let vit = try CheckpointLoader().load(folder)
        #expect(vit.config.width == 64 && vit.config.numClasses == 0)
    }

    @Test func encoderOnlyFileIsRefusedForReconstruction() throws {
        #expect(throws: CheckpointError.self) {
            try MAECheckpoint.load(fixture(Self.official).appendingPathComponent("mae_pretrain_encoder.pth"), heads: 4)
        }
    }
}
