import Checkpoints
import Datasets
import Foundation
import Images
import NN
import Tensors
import TestSupport
import Testing
import Training
import ViT

/// A masked autoencoder for the 8x8 quadrant images: 2x2 patches (16, of which 4 are kept), a 32-wide encoder.
func tinyAutoencoder(seed: UInt64, lossPredictor: Bool) throws -> MaskedAutoencoder {
    var encoder = ViTConfig()
    (encoder.imageSize, encoder.patchSize, encoder.width, encoder.depth, encoder.heads, encoder.mlpRatio) = (8, 2, 32, 2, 2, 2)
    encoder.data.mean = [0.3, 0.3, 0.3]
    encoder.data.std = [0.3, 0.3, 0.3]
    var config = MAEConfig(encoder: encoder)
    (config.decoderWidth, config.decoderDepth, config.decoderHeads, config.normPixLoss) = (16, 1, 2, true)
    config.lossPredictor = lossPredictor
    // A stream of its own: suites running in parallel draw from the shared generator between a seed and a build.
    return try GlobalRandom.using(RandomStream(SeededGenerator(seed: seed))) { try MaskedAutoencoder(config) }
}

func pretrainingOptions(_ method: PretrainingMethod, epochs: Int) -> PretrainingOptions {
    var options = PretrainingOptions()
    options.method = method
    options.epochs = epochs
    options.batchSize = 32
    options.learningRate = 2e-3
    options.warmupEpochs = 0.5
    options.seed = 3
    return options
}

@Suite(.serialized) struct PretrainerTests {
    /// The reconstruction loss falls, and every file of the run is written.
    @Test(arguments: [PretrainingMethod.mae, .hpm])
    func lossesFall(method: PretrainingMethod) throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = try tinyAutoencoder(seed: 1, lossPredictor: method == .hpm)
        let pretrainer = try Pretrainer(
            model: model, options: pretrainingOptions(method, epochs: 4), data: quadrantDataset(count: 256, seed: 5), folder: folder)
        #expect(try pretrainer.run() == .finished)
        let history = pretrainer.state.history
        #expect(history.count == 4)
        #expect(history.last!.loss < 0.8 * history.first!.loss, "reconstruction loss \(history.map(\.loss))")
        if method == .hpm { #expect(history.allSatisfy { $0.rankingLoss?.isFinite == true }) }
        for file in [
            "model.safetensors", "config.json", "metrics.jsonl", "curves.png", "reconstruction.png", "reconstructions/epoch-004.png"
        ] {
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent(file).path), "\(file)")
        }
    }

    /// HPM's ranking loss trains the loss predictor and, through the shared decoder input, the encoder, the decoder
    /// embedding and the mask token (HPM detaches only the target losses); the reconstructor gets none of it.
    @Test func rankingLossReachesTheSharedEncoder() throws {
        let model = try tinyAutoencoder(seed: 6, lossPredictor: true)
        var rng = SeededGenerator(seed: 2)
        let images = TrainingLoader.normalisedBatch(
            (0..<4).map { quadrantDataset(count: 4, seed: 8).image($0) }, mean: [0.3, 0.3, 0.3], std: [0.3, 0.3, 0.3])
        let mask = PatchMask.random(batch: 4, patches: 16, keep: 4, using: &rng)
        let outputs = model.forward(images, mask: mask)
        let perPatch = model.reconstructionLoss(images, prediction: outputs.prediction, mask: mask).perPatch
        HardPatchesMining.rankingLoss(
            predicted: outputs.predictedLoss!.gather(axis: 1, mask.removed), target: perPatch.gather(axis: 1, mask.removed)
        ).backward()
        let grads = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.tensor.grad) })
        for name in [
            "blocks.0.attn.qkv.weight", "patch_embed.proj.weight", "decoder_embed.weight", "mask_token", "decoder_pred_losspred.weight"
        ] {
            #expect((grads[name]??.toArray().map(abs).max() ?? 0) > 0, "\(name) gets no gradient from the ranking loss")
        }
        for name in ["decoder_blocks.0.attn.qkv.weight", "decoder_pred.weight"] { #expect(grads[name]! == nil, "\(name)") }
    }

    /// Stopped in the middle of an epoch and resumed, a run ends with the same weights (and teacher) to the bit as
    /// one that never stopped.
    @Test(arguments: [PretrainingMethod.mae, .hpm])
    func resumeContinuesExactly(method: PretrainingMethod) throws {
        let data = quadrantDataset(count: 128, seed: 9)
        let straightFolder = try temporaryFolder(), stoppedFolder = try temporaryFolder()
        defer { for f in [straightFolder, stoppedFolder] { try? FileManager.default.removeItem(at: f) } }
        let straight = try Pretrainer(
            model: try tinyAutoencoder(seed: 2, lossPredictor: method == .hpm), options: pretrainingOptions(method, epochs: 2),
            data: data, folder: straightFolder)
        #expect(try straight.run() == .finished)

        let first = try Pretrainer(
            model: try tinyAutoencoder(seed: 2, lossPredictor: method == .hpm), options: pretrainingOptions(method, epochs: 2),
            data: data, folder: stoppedFolder)
        first.stepLimit = 6  // epoch 2, batch 2 of 4
        #expect(try first.run() == .stopped)
        GlobalRandom.seed(12345)  // nothing outside the run may matter
        let resumed = try Pretrainer.resume(folder: stoppedFolder, data: data)
        #expect(resumed.state.epoch == 1 && resumed.state.batch == 2)
        #expect(try resumed.run() == .finished)

        for ((name, a), (_, b)) in zip(straight.model.namedParameters(), resumed.model.namedParameters()) {
            #expect(a.toArray() == b.toArray(), "\(name) differs after resume")
        }
        for ((name, a), (_, b)) in zip(straight.teacher?.namedParameters() ?? [], resumed.teacher?.namedParameters() ?? []) {
            #expect(a.toArray() == b.toArray(), "teacher \(name) differs after resume")
        }
        #expect(straight.state.history.map(\.loss) == resumed.state.history.map(\.loss))
    }

    /// `vit pretrain --resume --precision bf16`: a float32 run goes on in mixed precision from where it stopped, and
    /// its checkpoint keeps the new precision.
    @Test func resumeMayChangeThePrecision() throws {
        let data = quadrantDataset(count: 128, seed: 9)
        let straightFolder = try temporaryFolder(), changedFolder = try temporaryFolder()
        defer { for f in [straightFolder, changedFolder] { try? FileManager.default.removeItem(at: f) } }
        let straight = try Pretrainer(
            model: try tinyAutoencoder(seed: 2, lossPredictor: false), options: pretrainingOptions(.mae, epochs: 2), data: data,
            folder: straightFolder)
        #expect(try straight.run() == .finished)
        let first = try Pretrainer(
            model: try tinyAutoencoder(seed: 2, lossPredictor: false), options: pretrainingOptions(.mae, epochs: 2), data: data,
            folder: changedFolder)
        first.stepLimit = 6
        #expect(try first.run() == .stopped)
        #expect(try Pretrainer.savedRun(in: changedFolder).options.autocast == nil)
        let resumed = try Pretrainer.resume(folder: changedFolder, data: data, precision: .bf16)
        #expect(resumed.options.autocast == .bfloat16)
        #expect(try resumed.run() == .finished)
        #expect(try Pretrainer.savedRun(in: changedFolder).options.autocast == .bfloat16)
        #expect(resumed.state.history.map(\.precision) == ["fp32", "bf16"])  // stopped in epoch 2 of 2
        let a = straight.model.parameters().flatMap { $0.toArray() }, b = resumed.model.parameters().flatMap { $0.toArray() }
        #expect(a != b)
        let largest = zip(a, b).map { abs($0 - $1) }.max()!
        #expect(largest.isFinite && largest < 0.05, "bf16 steps moved a weight by \(largest)")
    }

    /// `vit train --init RUN`: the encoder fine-tunes, the decoders are reported unused.
    @Test func fineTuningTakesTheEncoder() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let pretrainer = try Pretrainer(
            model: try tinyAutoencoder(seed: 4, lossPredictor: true), options: pretrainingOptions(.hpm, epochs: 1),
            data: quadrantDataset(count: 64, seed: 1), folder: folder)
        _ = try pretrainer.run()
        let (config, tensors, _) = try CheckpointLoader().read(folder)
        let (model, report) = try FineTuning.model(
            checkpointConfig: config, tensors: tensors, classNames: ["a", "b", "c", "d"], pooling: .avg, dropout: 0, dropPath: 0.1)
        #expect(model.config.width == 32 && model.config.depth == 2 && model.config.pooling == .avg)
        let encoder = pretrainer.model.encoderStateDict()
        // Average pooling normalises after pooling (a new fc_norm), so the encoder's final norm is not used.
        #expect(Set(report.loaded) == Set(encoder.keys).subtracting(["norm.weight", "norm.bias"]))
        #expect(report.unused.contains("norm.weight"))
        #expect(report.unused.contains("decoder_embed.weight") && report.unused.contains("decoder_pred_losspred.weight"))
        #expect(model.stateDict()["blocks.1.attn.qkv.weight"]!.toArray() == encoder["blocks.1.attn.qkv.weight"]!.toArray())
    }

    @Test func unlabelledFolderReadsImagesAtAnyDepth() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = quadrantDataset(count: 3, seed: 1)
        for (i, path) in ["a.png", "deep/er/b.png", "c/d.png"].enumerated() {
            let url = folder.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try PNG.write(data.image(i), to: url)
        }
        let images = try ImageDataset.loadUnlabelled(folder)
        #expect(images.count == 3 && images.width == 8)
    }
}
