import Checkpoints
import Foundation
import NN
import Tensors
import TestSupport
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
        let checked = expectGradients(of: model, match: ref, "MAE")
        #expect(checked == 60)
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
        let folder = try temporaryFolder("mae-roundtrip")
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

/// Hard Patches Mining: the ranking loss against the formula's float64 reference, the masks it draws, the teacher's
/// decay, and the loss predictor's parameter names (as HPM's checkpoints hold them).
@Suite struct HardPatchesMiningTests {
    @Test func rankingLossMatchesReference() throws {
        let ref = try SafetensorsFile(contentsOf: fixture("losses").appendingPathComponent("reference.safetensors"))
        let predicted = try ref.tensor("hpm.pred")
        predicted.requiresGrad = true
        let loss = HardPatchesMining.rankingLoss(predicted: predicted, target: try ref.tensor("hpm.target"))
        expectWithin(loss.reshape([1]), try ref.tensor("hpm.loss"), 1e-5, "hpm loss")
        loss.backward()
        expectWithin(predicted.grad!, try ref.tensor("hpm.grad_pred"), 1e-6, "hpm gradient")
    }

    @Test func allTiedTargetsGiveZeroLoss() {
        let predicted = Tensor([0.3, -1, 2], shape: [1, 3], requiresGrad: true)
        let loss = HardPatchesMining.rankingLoss(predicted: predicted, target: Tensor([1, 1, 1], shape: [1, 3]))
        #expect(loss.item() == 0)
    }

    @Test func masksTakeTheHardestShareAndRandomRest() {
        var rng = SeededGenerator(seed: 7)
        // 16 patches, 4 kept, 12 removed; predicted loss = patch index, so the hardest are the highest indices.
        let predicted = Tensor((0..<32).map { Float($0 % 16) }, shape: [2, 16])
        let last = HardPatchesMining.mask(predictedLoss: predicted, keep: 4, epoch: 9, epochs: 10, using: &rng)
        for removed in last.removed {
            #expect(removed.count == 12)
            #expect(Set(10..<16).isSubset(of: Set(removed)), "int(12 × 0.5) = 6 hardest removed: \(removed)")
        }
        #expect(HardPatchesMining.hardShare(epoch: 0, epochs: 200) == 0.0025)
        let first = HardPatchesMining.mask(predictedLoss: predicted, keep: 4, epoch: 0, epochs: 200, using: &rng)
        #expect(first.removed.allSatisfy { $0.count == 12 })
        #expect(first.removed[0] != first.removed[1], "random masks differ between images")
    }

    @Test func teacherDecayRisesOverTheFirstHundredEpochs() {
        #expect(HardPatchesMining.teacherDecay(epoch: 0) == 0.999)
        #expect(abs(HardPatchesMining.teacherDecay(epoch: 50) - 0.99945) < 1e-7)
        #expect(HardPatchesMining.teacherDecay(epoch: 100) == 0.9999)
        #expect(HardPatchesMining.teacherDecay(epoch: 400) == 0.9999)
    }

    @Test func lossPredictorHasHPMNamesAndPredictsEveryPatch() throws {
        var encoder = ViTConfig()
        (encoder.imageSize, encoder.patchSize, encoder.width, encoder.depth, encoder.heads) = (16, 4, 32, 1, 2)
        var config = MAEConfig(encoder: encoder)
        (config.decoderWidth, config.decoderDepth, config.decoderHeads, config.lossPredictor) = (16, 1, 2, true)
        let model = try MaskedAutoencoder(config)
        let names = Set(model.namedParameters().map(\.name))
        for name in ["decoder_blocks_losspred.0.attn.qkv.weight", "decoder_norm_losspred.weight", "decoder_pred_losspred.weight"] {
            #expect(names.contains(name), "\(name)")
        }
        var rng = SeededGenerator(seed: 1)
        let images = Tensor.randn([2, 3, 16, 16], using: &rng)
        let outputs = model.forward(images, mask: PatchMask.random(batch: 2, patches: 16, keep: config.keptPatches, using: &rng))
        #expect(outputs.predictedLoss?.shape == [2, 16])
        let teacher = model.forward(images, mask: .none(batch: 2, patches: 16))
        #expect(teacher.latent.shape == [2, 17, 32] && teacher.predictedLoss?.shape == [2, 16])
        // The teacher's path skips the reconstruction and predicts the same losses.
        #expect(model.predictedLossOnWholeImages(images).toArray() == teacher.predictedLoss!.toArray())
    }
}
