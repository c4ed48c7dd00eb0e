import Datasets
import Foundation
import NN
import Tensors
import TestSupport
import Testing
import Training
import ViT

@Suite struct FineTuningTests {
    /// MAE's param_groups_lrd on timm's vit_base_patch16_224 with average pooling, decay 0.75 (the fixture): every
    /// parameter's learning-rate scale and whether it decays.
    @Test func layerDecayMatchesMAE() throws {
        let url = Fixtures.url("TrainingTests", "layer_decay_vit_base_0.75.json")
        let table = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: [String: Any]]
        var config = try ViTConfig.preset("vit_base_patch16_224")
        config.pooling = .avg
        let model = try Init.withoutDrawing { try VisionTransformer(config) }
        let groups = ParameterGroup.layerDecayed(model, depth: config.depth, weightDecay: 0.05, layerDecay: 0.75)
        var found: [String: (scale: Float, decays: Bool)] = [:]
        let names = Dictionary(uniqueKeysWithValues: model.namedParameters().map { (ObjectIdentifier($0.tensor), $0.name) })
        for group in groups {
            for p in group.parameters { found[names[ObjectIdentifier(p)]!] = (group.learningRateScale, group.weightDecay > 0) }
        }
        #expect(Set(found.keys) == Set(table.keys))
        for (name, row) in table {
            let scale = Float((row["lr_scale"] as! NSNumber).doubleValue), decays = row["weight_decay"] as! Bool
            #expect(abs(found[name]!.scale - scale) <= 1e-6 * scale, "\(name) scale")
            #expect(found[name]!.decays == decays, "\(name) weight decay")
        }
    }
}

@Suite(.serialized) struct FineTuningModelTests {
    /// A pretrained checkpoint: the tiny model after 6 epochs on the four quadrant classes (trained once).
    static let pretrained = Result { try train() }
    func checkpoint() throws -> (config: ViTConfig, tensors: [String: Tensor]) { try Self.pretrained.get() }

    static func train() throws -> (config: ViTConfig, tensors: [String: Tensor]) {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var options = TrainingOptions()
        options.epochs = 6
        options.batchSize = 16
        options.learningRate = 3e-3
        options.warmupEpochs = 0
        options.augmentation = .none
        let trainer = try Trainer(
            model: try tinyModel(seed: 31), options: options, trainSet: quadrantDataset(count: 240, seed: 32), validationSet: nil,
            folder: folder)
        _ = try trainer.run()
        var config = (trainer.model as! VisionTransformer).config
        config.labels = ["a", "b", "c", "d"]
        return (config, trainer.model.stateDict().mapValues { $0.copy() })
    }

    /// --distilled on a checkpoint without a distillation token (MAE's encoder, a plain ViT): the token starts as
    /// the class token, its position as the class token's, and the model runs with both heads.
    @Test func aDistillationTokenIsAddedToAPretrainedEncoder() throws {
        let (config, tensors) = try checkpoint()
        #expect(!config.distillationToken)
        let (model, report) = try FineTuning.model(
            checkpointConfig: config, tensors: tensors, classNames: ["x", "y"], pooling: nil, dropout: 0, dropPath: 0, distilled: true)
        #expect(model.config.distillationToken && report.added != nil && report.summary.contains("distillation token added"))
        #expect(try #require(model.distToken).toArray() == (try #require(tensors["cls_token"])).toArray())
        let pos = try #require(tensors["pos_embed"]), posEmbed = try #require(model.posEmbed)
        let grown = posEmbed.toArray()
        let d = config.width
        #expect(posEmbed.shape == [1, pos.shape[1] + 1, d])
        #expect(Array(grown[0..<d]) == Array(pos.toArray()[0..<d]) && Array(grown[d..<(2 * d)]) == Array(pos.toArray()[0..<d]))
        #expect(Array(grown[(2 * d)...]) == Array(pos.toArray()[d...]))
        #expect(model.headDist != nil && report.loaded.contains("blocks.0.attn.qkv.weight"))
        let data = quadrantDataset(count: 2, seed: 9)
        let images = TrainingLoader.normalisedBatch([data.image(0), data.image(1)], mean: config.data.mean, std: config.data.std)
        let outputs = Autograd.withNoGrad { model.forward(images) }
        #expect(outputs.distillationHeadLogits?.shape == [2, 2])
    }

    /// The quadrant images with two classes: red or green (a, b) against blue or yellow (c, d).
    func twoClassData() -> ImageDataset {
        let four = quadrantDataset(count: 160, seed: 33)
        return ImageDataset(
            width: four.width, height: four.height, pixels: four.pixels, labels: four.labels.map { $0 / 2 }, classNames: ["warm", "cool"])
    }

    @Test func sameClassesKeepTheHeadOthersGetAZeroHead() throws {
        let (config, tensors) = try checkpoint()
        let (kept, keptReport) = try FineTuning.model(
            checkpointConfig: config, tensors: tensors, classNames: ["a", "b", "c", "d"], pooling: nil, dropout: 0, dropPath: 0.1)
        #expect(keptReport.fresh.isEmpty && keptReport.unused.isEmpty && keptReport.head.contains("kept"))
        for (name, p) in kept.namedParameters() { #expect(p.toArray() == tensors[name]!.toArray(), "\(name)") }
        #expect(kept.config.dropPath == 0.1)

        let (replaced, report) = try FineTuning.model(
            checkpointConfig: config, tensors: tensors, classNames: ["x", "y"], pooling: nil, dropout: 0, dropPath: 0)
        #expect(Set(report.fresh) == ["head.weight", "head.bias"] && report.head.contains("replaced"))
        #expect(replaced.head!.weight.shape == [2, 32] && replaced.head!.weight.toArray().allSatisfy { $0 == 0 })
        #expect(replaced.config.labels == ["x", "y"])
        #expect(replaced.blocks[1].mlp.fc2.weight.toArray() == tensors["blocks.1.mlp.fc2.weight"]!.toArray())
        let mae = try FineTuning.model(
            checkpointConfig: config, tensors: tensors, classNames: ["x", "y"], pooling: nil, dropout: 0, dropPath: 0,
            headInit: .truncNormal)
        let values = mae.model.head!.weight.toArray()
        #expect(values.allSatisfy { abs($0) <= 4e-5 } && values.contains { $0 != 0 } && mae.report.head.contains("std 2e-5"))
        // Same count, other names: a head trained for other classes is not kept.
        let renamed = try FineTuning.model(
            checkpointConfig: config, tensors: tensors, classNames: ["d", "c", "b", "a"], pooling: nil, dropout: 0, dropPath: 0)
        #expect(renamed.report.head.contains("replaced"))
    }

    /// Token -> average pooling, as MAE fine-tunes: a new fc_norm after the pooling, the checkpoint's norm unused.
    @Test func averagePoolingGetsANewFCNorm() throws {
        let (config, tensors) = try checkpoint()
        let (model, report) = try FineTuning.model(
            checkpointConfig: config, tensors: tensors, classNames: ["x", "y"], pooling: .avg, dropout: 0, dropPath: 0)
        #expect(model.config.pooling == .avg && model.fcNorm != nil && model.norm == nil)
        #expect(Set(report.fresh) == ["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"])
        #expect(Set(report.unused) == ["norm.weight", "norm.bias"])
        #expect(model.fcNorm!.weight.toArray().allSatisfy { $0 == 1 })
    }

    /// A few epochs from a checkpoint lower the loss, with layer decay and SGD; a linear probe changes the head only.
    @Test func fineTuningLearnsAndALinearProbeMovesOnlyTheHead() throws {
        let (config, tensors) = try checkpoint()
        let data = twoClassData()
        for probe in [false, true] {
            let folder = try temporaryFolder()
            defer { try? FileManager.default.removeItem(at: folder) }
            var options = TrainingOptions()
            options.epochs = 5
            options.batchSize = 16
            options.learningRate = probe ? 0.1 : 0.02
            options.warmupEpochs = 0
            options.weightDecay = 0
            options.augmentation = .none
            options.optimizer = .sgd
            options.layerDecay = 0.75
            options.headOnly = probe ? true : nil
            let (model, _) = try FineTuning.model(
                checkpointConfig: config, tensors: tensors, classNames: data.classNames, pooling: nil, dropout: 0, dropPath: 0)
            let trainer = try Trainer(model: model, options: options, trainSet: data, validationSet: nil, folder: folder)
            #expect(try trainer.run() == .finished)
            let history = trainer.state.history
            // Chance is ln 2 = 0.69 (the head starts at zero); the checkpoint's features separate the two classes.
            #expect(history.last!.trainLoss < 0.45, "probe: \(probe), losses \(history.map(\.trainLoss))")
            let changed = trainer.model.namedParameters().filter { $0.tensor.toArray() != tensors[$0.name]!.toArray() }.map(\.name)
            if probe {
                #expect(Set(changed) == ["head.weight", "head.bias"])
            } else {
                #expect(changed.count == trainer.model.namedParameters().count)
            }
        }
    }
}

@Suite struct AccumulationTests {
    /// Two batches of 8 accumulated make the same SGD step as one batch of 16 (no augmentation, no dropout).
    @Test func twoHalfBatchesStepLikeOneWholeBatch() throws {
        let data = quadrantDataset(count: 64, seed: 41)
        func oneStep(batch: Int, accumulate: Int?) throws -> [String: [Float]] {
            let folder = try temporaryFolder()
            defer { try? FileManager.default.removeItem(at: folder) }
            var options = TrainingOptions()
            options.epochs = 1
            options.batchSize = batch
            options.accumulate = accumulate
            options.learningRate = 0.5
            options.warmupEpochs = 0
            options.augmentation = .none
            options.optimizer = .sgd
            options.momentum = 0
            options.weightDecay = 0
            let trainer = try Trainer(model: try tinyModel(seed: 42), options: options, trainSet: data, validationSet: nil, folder: folder)
            trainer.stepLimit = accumulate ?? 1
            #expect(try trainer.run() == .stopped)
            return Dictionary(uniqueKeysWithValues: trainer.model.namedParameters().map { ($0.name, $0.tensor.toArray()) })
        }
        let whole = try oneStep(batch: 16, accumulate: nil), halves = try oneStep(batch: 8, accumulate: 2)
        let start = Dictionary(uniqueKeysWithValues: try tinyModel(seed: 42).namedParameters().map { ($0.name, $0.tensor.toArray()) })
        for (name, values) in whole {
            let moved = zip(values, start[name]!).map { abs($0 - $1) }.max() ?? 0
            let differs = zip(values, halves[name]!).map { abs($0 - $1) }.max() ?? 0
            #expect(differs <= 1e-5 + 1e-3 * moved, "\(name): moved \(moved), halves differ by \(differs)")
        }
        #expect(whole["head.weight"]! != start["head.weight"]!, "the step moved the weights")
    }
}
