import Checkpoints
import Datasets
import Foundation
import NN
import Tensors
import TestSupport
import Testing
import Training
import ViT

/// Validation images are never training images, and a resumed run validates on the images it started with.
@Suite(.serialized) struct ValidationTests {
    func options() -> TrainingOptions {
        var options = TrainingOptions()
        options.epochs = 2
        options.batchSize = 8
        options.augmentation = .none
        return options
    }

    /// The quadrant images with names, as an image folder would give them.
    func named(_ data: ImageDataset) -> ImageDataset {
        ImageDataset(
            width: data.width, height: data.height, pixels: data.pixels, labels: data.labels, classNames: data.classNames,
            sources: data.labels.indices.map { "\(data.classNames[data.labels[$0]])/\($0).png" })
    }

    @Test func theSplitIsSavedAndAResumeOnChangedDataIsRefused() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let whole = named(quadrantDataset(count: 80, seed: 2))
        let (train, validation) = whole.stratifiedSplit(validationFraction: 0.25, seed: 9)
        #expect(Set(train.sources).isDisjoint(with: validation.sources))
        let source = ValidationSource.split(fraction: 0.25, seed: 9, files: validation.sources)
        let trainer = try Trainer(
            model: try tinyModel(seed: 1), options: options(), trainSet: train, validationSet: validation,
            validationSource: source, folder: folder)
        trainer.stepLimit = 3
        #expect(try trainer.run() == .stopped)
        #expect(try Trainer.savedRun(in: folder).validation == source)

        // The same data and split: resumes.
        let resumed = try Trainer.resume(folder: folder, trainSet: train, validationSet: validation, validationSource: source)
        #expect(resumed.validationSource == source && resumed.state.step == 3)
        // One image more in the data: the same seed and fraction hold out other images, and the resume is refused.
        let grown = named(quadrantDataset(count: 84, seed: 2))
        let (train2, validation2) = grown.stratifiedSplit(validationFraction: 0.25, seed: 9)
        #expect {
            try Trainer.resume(
                folder: folder, trainSet: train2, validationSet: validation2,
                validationSource: .split(fraction: 0.25, seed: 9, files: validation2.sources))
        } throws: { "\($0)".contains("the data changed") }
        // Data that lost its test part cannot stand in for a split either.
        #expect {
            try Trainer.resume(folder: folder, trainSet: whole, validationSet: nil, validationSource: ValidationSource.none)
        } throws: { "\($0)".contains("the data changed") }
    }

    @Test func aSplitThatOverlapsTheTrainingImagesIsRefused() throws {
        let data = named(quadrantDataset(count: 40, seed: 2))
        let validation = data.subset([0, 1, 2, 3])
        #expect {
            try Trainer(
                model: try tinyModel(seed: 1), options: options(), trainSet: data, validationSet: validation,
                validationSource: .split(fraction: 0.1, seed: 0, files: validation.sources), folder: try temporaryFolder())
        } throws: { "\($0)".contains("overlap") }
    }

    @Test func aRunStoppedBeforeItsFirstEpochLeavesALoadableModel() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let trainer = try Trainer(
            model: try tinyModel(seed: 1), options: options(), trainSet: quadrantDataset(count: 64, seed: 2),
            validationSet: nil, folder: folder)
        trainer.stepLimit = 2
        #expect(try trainer.run() == .stopped)
        #expect(trainer.state.history.isEmpty)
        let model = try CheckpointLoader().load(folder)
        #expect(model.config.labels == ["a", "b", "c", "d"])
        let weights = try SafetensorsFile(contentsOf: folder.appendingPathComponent("model.safetensors")).tensor("head.weight").toArray()
        #expect(weights == (trainer.model as! VisionTransformer).head!.weight.toArray())
    }

    @Test func theDefaultWarmUpFitsAnyEpochCount() throws {
        var options = TrainingOptions()
        options.epochs = 1
        try options.validate()
        #expect(options.effectiveWarmupEpochs == 0.1)
        options.epochs = 60
        #expect(options.effectiveWarmupEpochs == 3)
        options.warmupEpochs = 1
        options.epochs = 1
        #expect(throws: TrainingError.self) { try options.validate() }
    }

    @Test func theMemoryEstimateRefusesA512PixelPatch4Run() throws {
        var config = ViTConfig.cifar
        config.imageSize = 512
        let estimate = MemoryEstimate(config: config, batchSize: 128)
        #expect(config.tokenCount == 16385)
        #expect(throws: MemoryEstimate.TooLarge.self) { try estimate.check(available: 24 * 1_073_741_824) }
        do {
            try estimate.check(available: 24 * 1_073_741_824)
        } catch {
            let text = "\(error)"
            #expect(text.contains("16385 tokens") && text.contains("GiB") && text.contains("--image-size"))
        }
        // The built-in recipe fits easily, and the estimate suggests a batch that fits when one does.
        #expect(throws: Never.self) { try MemoryEstimate(config: ViTConfig.cifar, batchSize: 128).check(available: 24 * 1_073_741_824) }
        var base = try ViTConfig.preset("vit_base_patch16_224")
        base.numClasses = 10
        let big = MemoryEstimate(config: base, batchSize: 256)
        let fits = try #require(big.largestBatch(fitting: 8 * 1_073_741_824))
        #expect(fits < 256 && MemoryEstimate(config: base, batchSize: fits).totalBytes <= 8 * 1_073_741_824)
    }

    /// A ResNet's estimate counts the parameters the model has and the feature maps its tape keeps: within a few
    /// percent of the peak RSS measured for resnet18 (CIFAR stem, 32 px, batch 128: 1.62 GiB) and resnet50 (64 px,
    /// batch 32: 1.20 GiB); an ImageNet-sized resnet50 batch that cannot fit in 24 GiB is refused with a batch that does.
    @Test func theMemoryEstimateCoversResNets() throws {
        var cifar = ResNetConfig()
        (cifar.cifarStem, cifar.imageSize, cifar.numClasses) = (true, 32, 10)
        var bottleneck = ResNetConfig()
        (bottleneck.block, bottleneck.layers, bottleneck.imageSize, bottleneck.numClasses) = (.bottleneck, [3, 4, 6, 3], 64, 10)
        for config in [cifar, bottleneck] {
            let model = try Init.withoutDrawing { try ResNet(config) }  // only the shapes count
            let estimated = MemoryEstimate(architecture: .resnet(config), batchSize: 1).parameterCount
            #expect(abs(estimated - Double(model.parameterCount)) < 0.01 * Double(model.parameterCount), "\(config.block)")
        }
        let gib = 1_073_741_824.0
        let small = MemoryEstimate(architecture: .resnet(cifar), batchSize: 128, dataBytes: 5000 * 3072).totalBytes / gib
        #expect(small > 1.55 && small < 1.85, "\(small)")
        let large = MemoryEstimate(architecture: .resnet(bottleneck), batchSize: 32, dataBytes: 5000 * 12288).totalBytes / gib
        #expect(large > 1.1 && large < 1.35, "\(large)")
        bottleneck.imageSize = 224
        let imageNet = MemoryEstimate(architecture: .resnet(bottleneck), batchSize: 512)
        do {
            try imageNet.check(available: 24 * gib)
            Issue.record("a 512-image resnet50 step at 224 px fits in 24 GiB?")
        } catch {
            #expect("\(error)".contains("ResNet of 16 bottleneck blocks") && "\(error)".contains("--batch-size"), "\(error)")
        }
    }
}
