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

/// 8x8 images of four classes: a 4x4 block in a random quadrant on a noisy dark background, coloured by the class
/// (red, green, blue, yellow) at a random brightness. Learnable by a tiny ViT with 4x4 patches in a few epochs.
func quadrantDataset(count: Int, seed: UInt64) -> ImageDataset {
    var rng = SeededGenerator(seed: seed)
    let colours: [[Float]] = [[1, 0.2, 0.2], [0.2, 1, 0.2], [0.2, 0.2, 1], [1, 1, 0.2]]
    var pixels: [UInt8] = [], labels: [Int] = []
    for i in 0..<count {
        let label = i % 4
        let quadrant = Int(rng.next() % 4)
        let brightness = 150 + Float(rng.next() % 100)
        for y in 0..<8 {
            for x in 0..<8 {
                let inBlock = (y / 4) * 2 + x / 4 == quadrant
                for c in 0..<3 { pixels.append(inBlock ? UInt8(brightness * colours[label][c]) : UInt8(rng.next() % 70)) }
            }
        }
        labels.append(label)
    }
    return ImageDataset(width: 8, height: 8, pixels: pixels, labels: labels, classNames: ["a", "b", "c", "d"])
}

func tinyModel(seed: UInt64, dropPath: Float = 0) throws -> VisionTransformer {
    var config = ViTConfig()
    config.imageSize = 8
    config.patchSize = 4
    config.width = 32
    config.depth = 2
    config.heads = 2
    config.mlpRatio = 2
    config.numClasses = 4
    config.dropPath = dropPath
    config.data.mean = [0.3, 0.3, 0.3]
    config.data.std = [0.3, 0.3, 0.3]
    // Its own generator: tests in other suites may draw from the shared one at the same time.
    return try GlobalRandom.using(RandomStream(SeededGenerator(seed: seed))) { try VisionTransformer(config) }
}

@Suite(.serialized) struct TrainerTests {
    /// In float32 and in mixed precision (bf16 matrix products, `vit train --precision bf16`).
    @Test(arguments: [nil, DType.bfloat16])
    func lossFallsAndHeldOutAccuracyFarAboveChance(autocast: DType?) throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var options = TrainingOptions()
        options.autocast = autocast
        options.epochs = 5
        options.batchSize = 16
        options.learningRate = 3e-3
        options.warmupEpochs = 1
        options.augmentation = .none
        let trainer = try Trainer(
            model: try tinyModel(seed: 1), options: options, trainSet: quadrantDataset(count: 240, seed: 2),
            validationSet: quadrantDataset(count: 200, seed: 3), folder: folder)
        #expect(try trainer.run() == .finished)
        let history = trainer.state.history
        #expect(history.count == 5)
        #expect(history.last!.trainLoss < 0.5 * history.first!.trainLoss)
        #expect(history.last!.validationTop1! > 0.9)  // chance is 0.25
        // The folder is a native checkpoint folder with its metrics and curves.
        for name in ["model.safetensors", "config.json", "checkpoint.safetensors", "metrics.jsonl", "curves.png"] {
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path), "\(name)")
        }
        let lines = try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 5 && lines[0].contains("\"val_top1\""))
        let reloaded = try CheckpointLoader().load(folder)
        #expect(reloaded.config.labels == ["a", "b", "c", "d"])
        let evaluation = try Evaluation.run(reloaded, on: quadrantDataset(count: 200, seed: 3), mean: [0.3, 0.3, 0.3], std: [0.3, 0.3, 0.3])
        #expect(abs(evaluation.top1 - history.last!.validationTop1!) < 1e-9)
    }

    /// N steps in one go and N/2 + resume + N/2 end with identical weights, optimiser moments and EMA, with every
    /// random part of the recipe switched on (order, crop, flip, RandAugment, erasing, mixup/cutmix, drop path).
    @Test(arguments: [nil, DType.bfloat16])
    func resumeContinuesExactly(autocast: DType?) throws {
        var options = TrainingOptions()
        options.autocast = autocast
        options.epochs = 2
        options.batchSize = 16
        options.warmupEpochs = 0.5
        options.emaDecay = 0.9
        options.gradientClip = 1
        options.augmentation.cropPadding = 2
        options.augmentation.randAugmentOps = 2
        options.augmentation.randAugmentMagnitude = 9
        options.augmentation.randomErasing = 0.5
        options.mixing = BatchMixing(mixupAlpha: 0.8, cutmixAlpha: 1)
        let data = quadrantDataset(count: 96, seed: 4), validation = quadrantDataset(count: 32, seed: 5)  // 6 steps an epoch

        let whole = try temporaryFolder(), split = try temporaryFolder()
        defer { for f in [whole, split] { try? FileManager.default.removeItem(at: f) } }
        let once = try Trainer(
            model: try tinyModel(seed: 9, dropPath: 0.2), options: options, trainSet: data,
            validationSet: validation, folder: whole)
        #expect(try once.run() == .finished)

        let first = try Trainer(
            model: try tinyModel(seed: 9, dropPath: 0.2), options: options, trainSet: data,
            validationSet: validation, folder: split)
        first.stepLimit = 4  // stops inside the first epoch
        #expect(try first.run() == .stopped)
        GlobalRandom.seed(12345)  // whatever happens in between must not matter
        let second = try Trainer.resume(folder: split, trainSet: data, validationSet: validation)
        #expect(second.state.epoch == 0 && second.state.batch == 4)
        second.stepLimit = 5  // stops inside the second epoch
        #expect(try second.run() == .stopped)
        let third = try Trainer.resume(folder: split, trainSet: data, validationSet: validation)
        #expect(try third.run() == .finished)

        let differing = zip(once.model.namedParameters(), third.model.namedParameters())
            .filter { $0.tensor.toArray() != $1.tensor.toArray() }.map(\.0.name)
        #expect(differing.isEmpty, "weights differ: \(differing)")
        let averages = zip(once.averageModel!.parameters(), third.averageModel!.parameters()).filter { $0.toArray() != $1.toArray() }
        #expect(averages.isEmpty, "\(averages.count) EMA tensors differ")
        #expect(
            once.state.history
                == third.state.history.map { record in
                    var r = record
                    r.seconds = once.state.history[record.epoch - 1].seconds
                    r.imagesPerSecond = once.state.history[record.epoch - 1].imagesPerSecond
                    return r
                })
    }

    /// `vit train --resume --precision bf16|fp32`: a float32 run stopped after 5 of its 8 steps (in its second epoch)
    /// goes on in mixed precision from the same weights and moments, and its checkpoint and metrics say so from then
    /// on; the same resume with the run's own precision named still continues to the bit.
    @Test func resumeMayChangeThePrecision() throws {
        var options = TrainingOptions()
        options.epochs = 2
        options.batchSize = 16
        options.warmupEpochs = 0.5
        let data = quadrantDataset(count: 64, seed: 4)  // 4 steps an epoch
        let straightFolder = try temporaryFolder(), keptFolder = try temporaryFolder(), changedFolder = try temporaryFolder()
        defer { for f in [straightFolder, keptFolder, changedFolder] { try? FileManager.default.removeItem(at: f) } }
        let straight = try Trainer(
            model: try tinyModel(seed: 3), options: options, trainSet: data, validationSet: nil, folder: straightFolder)
        #expect(try straight.run() == .finished)
        for folder in [keptFolder, changedFolder] {
            let first = try Trainer(model: try tinyModel(seed: 3), options: options, trainSet: data, validationSet: nil, folder: folder)
            first.stepLimit = 5
            #expect(try first.run() == .stopped)
        }
        let kept = try Trainer.resume(folder: keptFolder, trainSet: data, validationSet: nil, precision: .fp32)
        let changed = try Trainer.resume(folder: changedFolder, trainSet: data, validationSet: nil, precision: .bf16)
        #expect(kept.options.autocast == nil && changed.options.autocast == .bfloat16)
        #expect(zip(kept.model.parameters(), changed.model.parameters()).allSatisfy { $0.toArray() == $1.toArray() })
        #expect(try kept.run() == .finished)
        #expect(try changed.run() == .finished)

        let keptDiffers = zip(straight.model.parameters(), kept.model.parameters()).filter { $0.toArray() != $1.toArray() }
        #expect(keptDiffers.isEmpty, "\(keptDiffers.count) tensors differ with the precision unchanged")
        // bf16 products from step 6 on: other weights, still near the float32 ones (a bf16 rounding, not a new run).
        let straightWeights = straight.model.parameters().flatMap { $0.toArray() }
        let changedWeights = changed.model.parameters().flatMap { $0.toArray() }
        #expect(straightWeights != changedWeights)
        let largest = zip(straightWeights, changedWeights).map { abs($0 - $1) }.max()!
        #expect(largest.isFinite && largest < 0.05, "bf16 steps moved a weight by \(largest)")
        #expect(try Trainer.savedRun(in: changedFolder).options.autocast == .bfloat16)
        #expect(changed.state.history.map(\.precision) == ["fp32", "bf16"] && straight.state.history.map(\.precision) == ["fp32", "fp32"])
        #expect(try Trainer.savedRun(in: keptFolder).options.autocast == nil)
    }

    /// A 3-epoch run on 64 images stopped after its first epoch (a checkpoint at its end), and the trainer resuming it.
    func runStoppedAfterOneEpoch(in folder: URL, emaDecay: Float? = nil) throws -> (first: Trainer, resumed: Trainer) {
        var options = TrainingOptions()
        options.epochs = 3
        options.batchSize = 16
        options.warmupEpochs = 0
        options.emaDecay = emaDecay
        let data = quadrantDataset(count: 64, seed: 6)
        let trainer = try Trainer(model: try tinyModel(seed: 2), options: options, trainSet: data, validationSet: nil, folder: folder)
        trainer.stepLimit = 4
        #expect(try trainer.run() == .stopped)
        return (trainer, try Trainer.resume(folder: folder, trainSet: data, validationSet: nil))
    }

    @Test func nonFiniteLossStopsAndKeepsTheLastGoodCheckpoint() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (trainer, resumed) = try runStoppedAfterOneEpoch(in: folder)
        let saved = try Data(contentsOf: trainer.checkpointURL)
        (resumed.model as! VisionTransformer).head!.weight.pointer[0] = .nan
        #expect { try resumed.run() } throws: { error in
            "\(error)".contains("loss became nan") && "\(error)".contains("checkpoint.safetensors") && "\(error)".contains("epoch 2")
        }
        #expect(try Data(contentsOf: trainer.checkpointURL) == saved)
    }

    /// Weights that are not all finite are never saved, even when the loss stayed finite (here: the weight average,
    /// which the loss never sees): the run stops, naming them, and the last good checkpoint and model stay as they were.
    @Test func nonFiniteWeightsAreNeverSaved() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (trainer, resumed) = try runStoppedAfterOneEpoch(in: folder, emaDecay: 0.9)
        let checkpoint = try Data(contentsOf: trainer.checkpointURL)
        let model = try Data(contentsOf: folder.appendingPathComponent("model.safetensors"))
        (resumed.averageModel as! VisionTransformer).head!.bias!.pointer[1] = .infinity
        #expect { try resumed.run() } throws: { error in
            "\(error)".contains("weights became NaN or infinite in epoch 2 (ema.head.bias)")
                && "\(error)".contains("checkpoint.safetensors")
        }
        #expect(try Data(contentsOf: trainer.checkpointURL) == checkpoint)
        #expect(try Data(contentsOf: folder.appendingPathComponent("model.safetensors")) == model)
    }

    /// The average starts with a warm-up decay of min(decay, (1 + t) / (10 + t)): 0.1 at the first step.
    @Test func weightAverageWarmsUp() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var options = TrainingOptions()
        options.epochs = 2
        options.batchSize = 16
        options.warmupEpochs = 0
        options.emaDecay = 0.999
        let model = try tinyModel(seed: 3)
        let initial = model.parameters().map { $0.toArray() }
        let trainer = try Trainer(
            model: model, options: options, trainSet: quadrantDataset(count: 32, seed: 1),
            validationSet: nil, folder: folder)
        trainer.stepLimit = 1
        #expect(try trainer.run() == .stopped)
        for ((average, weights), start) in zip(zip(trainer.averageModel!.parameters(), model.parameters()), initial) {
            let expected = zip(start, weights.toArray()).map { 0.1 * $0 + 0.9 * $1 }
            #expect(zip(average.toArray(), expected).allSatisfy { abs($0 - $1) < 1e-6 })
        }
    }

    /// A run with an EMA exports either its raw or its averaged weights as a folder that loads as a model.
    @Test func exportWritesTheRawOrTheAveragedWeights() throws {
        let folder = try temporaryFolder(), raw = try temporaryFolder(), ema = try temporaryFolder()
        defer { for f in [folder, raw, ema] { try? FileManager.default.removeItem(at: f) } }
        var options = TrainingOptions()
        options.epochs = 1
        options.batchSize = 16
        options.warmupEpochs = 0
        options.emaDecay = 0.9
        let data = quadrantDataset(count: 32, seed: 7)
        let trainer = try Trainer(model: try tinyModel(seed: 4), options: options, trainSet: data, validationSet: nil, folder: folder)
        #expect(try trainer.run() == .finished)
        try Trainer.exportWeights(ofRunIn: folder, .raw, to: raw)
        try Trainer.exportWeights(ofRunIn: folder, .ema, to: ema)
        let rawModel = try CheckpointLoader().load(raw), emaModel = try CheckpointLoader().load(ema)
        #expect(rawModel.config.labels == data.classNames)
        #expect(zip(rawModel.parameters(), trainer.model.parameters()).allSatisfy { $0.toArray() == $1.toArray() })
        #expect(zip(emaModel.parameters(), trainer.averageModel!.parameters()).allSatisfy { $0.toArray() == $1.toArray() })
        #expect(zip(rawModel.parameters(), emaModel.parameters()).contains { $0.toArray() != $1.toArray() })

        var plain = options
        plain.emaDecay = nil
        let noAverage = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: noAverage) }
        #expect(
            try Trainer(model: try tinyModel(seed: 4), options: plain, trainSet: data, validationSet: nil, folder: noAverage).run()
                == .finished)
        #expect { try Trainer.exportWeights(ofRunIn: noAverage, .ema, to: ema) } throws: { "\($0)".contains("no ema weights") }
    }

    @Test func resumeExplainsAMissingOrForeignCheckpoint() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = quadrantDataset(count: 32, seed: 1)
        #expect { try Trainer.resume(folder: folder, trainSet: data, validationSet: nil) } throws: { "\($0)".contains("nothing to resume") }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Safetensors.write(["x": Tensor.zeros([2])], to: folder.appendingPathComponent("checkpoint.safetensors"))
        #expect { try Trainer.resume(folder: folder, trainSet: data, validationSet: nil) } throws: {
            "\($0)".contains("no SwiftViT training state")
        }
    }
}

@Suite struct EvaluationTests {
    @Test func topKConfusionAndJSON() {
        var evaluation = Evaluation(classNames: ["x", "y", "z"])
        // Rows: predicted 0 (true 0), predicted 2 with true 1 second (true 1), predicted 1 with true 2 last (true 2).
        let logits = Tensor([3, 1, 0, 0, 1, 2, 0, 5, -1], shape: [3, 3])
        evaluation.add(logits: logits, labels: [0, 1, 2])
        #expect(evaluation.count == 3 && evaluation.top1Correct == 1 && evaluation.top5Correct == 3)
        #expect(evaluation.confusion == [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
        #expect(evaluation.perClass == [1, 0, 0])
        let expectedLoss =
            (-log(exp(3.0) / (exp(3.0) + exp(1.0) + 1)) - log(exp(1.0) / (1 + exp(1.0) + exp(2.0)))
                - log(exp(-1.0) / (1 + exp(5.0) + exp(-1.0)))) / 3
        #expect(abs(evaluation.loss - expectedLoss) < 1e-9)
        let json = evaluation.json()
        #expect(json.hasPrefix("{\"top1\": 0.3333, \"top5\": 1.0000, \"count\": 3"))
        #expect(json.contains("\"per_class\": {\"x\": 1.0000, \"y\": 0.0000, \"z\": 0.0000}"))
        #expect(json.contains("\"confusion\": [[1, 0, 0], [0, 0, 1], [0, 1, 0]]"))
        #expect((try? JSONSerialization.jsonObject(with: Data(json.utf8))) != nil)
        #expect(evaluation.confusionText().split(separator: "\n").count == 4)
        #expect(evaluation.classHeadTop1 == nil && !json.contains("head"))
    }

    /// A distilled model is scored by its heads' average, and each head alone is counted beside it.
    @Test func eachHeadOfADistilledModel() throws {
        var evaluation = Evaluation(classNames: ["x", "y"])
        let classHead = Tensor([2, 0, 0, 1, 0, 1], shape: [3, 2])  // predicts x, y, y: 2 of 3 right
        let distillationHead = Tensor([0, 1, 0, 3, 0, 5], shape: [3, 2])  // predicts y, y, y: 1 of 3 right
        let average = (classHead + distillationHead) * 0.5  // x (1 against 0.5), y, y: 2 of 3 right
        evaluation.add(
            Classification(logits: average, features: average, classHeadLogits: classHead, distillationHeadLogits: distillationHead),
            labels: [0, 1, 0])
        #expect(evaluation.top1Correct == 2 && evaluation.classHeadTop1Correct == 2 && evaluation.distillationHeadTop1Correct == 1)
        #expect(evaluation.json().contains("\"class_head_top1\": 0.6667, \"distillation_head_top1\": 0.3333"))
    }
}

/// The trainer takes any `ImageModel`: a small ResNet (CIFAR stem) learns the quadrant images, its run folder loads
/// back as a ResNet with the same predictions, and an EMA of it (running statistics included) is kept.
@Suite struct ConvnetTrainingTests {
    @Test func resNetLearnsAndItsRunLoadsBack() throws {
        var config = ResNetConfig()
        (config.layers, config.channels, config.stemWidth, config.cifarStem) = ([1, 1, 1, 1], [8, 8, 8, 8], 8, true)
        (config.imageSize, config.numClasses, config.labels) = (8, 4, ["a", "b", "c", "d"])
        config.data.mean = [0.3, 0.3, 0.3]
        config.data.std = [0.3, 0.3, 0.3]
        GlobalRandom.seed(4)
        let model = try ResNet(config)
        var options = TrainingOptions()
        (options.epochs, options.batchSize, options.learningRate, options.warmupEpochs, options.emaDecay) = (5, 32, 1e-2, 0.5, 0.9)
        options.weightDecay = 0
        options.augmentation = .none
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let trainer = try Trainer(
            model: model, options: options, trainSet: quadrantDataset(count: 384, seed: 1),
            validationSet: quadrantDataset(count: 256, seed: 2), folder: folder)
        #expect(try trainer.run() == .finished)
        let accuracy = trainer.state.history.last!.validationTop1!
        #expect(accuracy > 0.6, "held-out accuracy \(trainer.state.history.map { ($0.trainAccuracy, $0.validationTop1!) }) (chance 0.25)")
        let loaded = try CheckpointLoader().loadModel(folder)
        #expect(loaded is ResNet && loaded.architecture == trainer.evaluatedModel.architecture)
        let images = TrainingLoader.normalisedBatch(
            (0..<4).map { quadrantDataset(count: 4, seed: 3).image($0) }, mean: config.data.mean, std: config.data.std)
        trainer.evaluatedModel.eval()
        let (a, b) = Autograd.withNoGrad { (trainer.evaluatedModel(images), loaded(images)) }
        #expect(a.toArray() == b.toArray())

        // Fine-tuning from the run (`vit train --init`): every tensor is copied; the same classes keep the head,
        // other classes get a new zero head over the same features, at any image size.
        let pretrained = try #require(loaded as? ResNet)
        let (same, kept) = try FineTuning.resNet(from: pretrained, classNames: ["a", "b", "c", "d"], imageSize: 8)
        same.eval()
        #expect(Autograd.withNoGrad { same(images) }.toArray() == b.toArray() && kept.fresh.isEmpty && kept.unused.isEmpty)
        let (other, replaced) = try FineTuning.resNet(from: pretrained, classNames: ["x", "y"], imageSize: 16)
        other.eval()
        #expect(Set(replaced.fresh) == ["fc.weight", "fc.bias"] && other.config.imageSize == 16 && other.config.numClasses == 2)
        let (newFeatures, oldFeatures) = Autograd.withNoGrad { (other.forward(images), pretrained.forward(images)) }
        #expect(newFeatures.features.toArray() == oldFeatures.features.toArray())
        #expect(newFeatures.logits.toArray().allSatisfy { $0 == 0 })
    }
}
