import CLIP
import Datasets
import Foundation
import Tensors
import TestSupport
import Testing
import Training

/// A CLIP for the 8x8 quadrant images: 2 blocks of width 32 per tower, captions of at most 8 tokens.
func tinyCLIP(seed: UInt64) -> CLIPModel {
    var config = CLIPConfig.small(imageSize: 8)
    (config.patchSize, config.visionWidth, config.visionLayers, config.visionHeadWidth) = (4, 32, 2, 16)
    (config.textWidth, config.textHeads, config.textLayers, config.contextLength, config.embedDim) = (32, 2, 2, 8, 16)
    (config.mean, config.std) = ([0.3, 0.3, 0.3], [0.3, 0.3, 0.3])
    // A stream of its own: suites running in parallel draw from the shared generator between a seed and a build.
    return GlobalRandom.using(RandomStream(SeededGenerator(seed: seed))) { CLIPModel(config) }
}

/// The quadrant images with their colours as class names, captioned "a red square." etc.
func colourCaptions(count: Int, seed: UInt64) -> ImageCaptions {
    let data = quadrantDataset(count: count, seed: seed)
    let named = ImageDataset(
        width: data.width, height: data.height, pixels: data.pixels, labels: data.labels, classNames: ["red", "green", "blue", "yellow"])
    return ImageCaptions.fromClasses(named, templates: ["a {} square.", "{}", "the colour {}."])
}

/// 16 pairs a step at lr 3e-3. No augmentation: a padded crop of 4 px at 8 px would often cut away the coloured
/// quadrant, leaving captions no image can predict (the run then stays at the collapsed loss ln 16).
func contrastiveOptions(epochs: Int) -> ContrastiveOptions {
    var options = ContrastiveOptions()
    options.epochs = epochs
    options.batchSize = 16
    options.learningRate = 3e-3
    options.warmupEpochs = 0.5
    options.weightDecay = 0
    options.augmentation = .none
    options.seed = 4
    return options
}

@Suite(.serialized) struct ContrastiveTrainerTests {
    /// Trained on captions from three templates, the model classifies held-out images zero-shot from a template it
    /// never saw, far above chance (25%); the loss falls and every file of the run is written, in open_clip's layout.
    @Test func zeroShotAccuracyFromUnseenPromptsFarAboveChance() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let tokenizer = try CLIPTokenizer.openAI()
        let heldOut = colourCaptions(count: 200, seed: 11).images
        let trainer = try ContrastiveTrainer(
            model: tinyCLIP(seed: 1), tokenizer: tokenizer, options: contrastiveOptions(epochs: 5),
            data: colourCaptions(count: 512, seed: 5),
            evaluation: .init(images: heldOut, templates: ["a picture of {}."]), folder: folder)
        #expect(try trainer.run() == .finished)
        let history = trainer.state.history
        #expect(history.last!.loss < 0.8 * history.first!.loss, "contrastive loss \(history.map(\.loss))")
        #expect((history.last!.zeroShotTop1 ?? 0) >= 50, "zero-shot top-1 \(history.map { $0.zeroShotTop1 ?? -1 })")
        for file in ["open_clip_config.json", "open_clip_model.safetensors", "checkpoint.safetensors", "metrics.jsonl", "curves.png"] {
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent(file).path), "\(file)")
        }
        // The saved folder loads back as the same model (what vit zeroshot --model reads).
        let reloaded = try CLIPModel.load(folder)
        let again = try Evaluation.zeroShot(reloaded, tokenizer: tokenizer, templates: ["a picture of {}."], on: heldOut)
        #expect(100 * again.top1 == history.last!.zeroShotTop1)
    }

    /// Stopped in the middle of an epoch and resumed, a run ends with the same weights to the bit as one that never
    /// stopped (the data order, augmentation and each image's caption are drawn from the seed, epoch and batch).
    @Test func resumeContinuesExactly() throws {
        let data = colourCaptions(count: 128, seed: 9)
        let tokenizer = try CLIPTokenizer.openAI()
        let straightFolder = try temporaryFolder(), stoppedFolder = try temporaryFolder()
        defer { for f in [straightFolder, stoppedFolder] { try? FileManager.default.removeItem(at: f) } }
        let straight = try ContrastiveTrainer(
            model: tinyCLIP(seed: 2), tokenizer: tokenizer, options: contrastiveOptions(epochs: 2), data: data, folder: straightFolder)
        #expect(try straight.run() == .finished)

        let first = try ContrastiveTrainer(
            model: tinyCLIP(seed: 2), tokenizer: tokenizer, options: contrastiveOptions(epochs: 2), data: data, folder: stoppedFolder)
        first.stepLimit = 10  // epoch 2, batch 2 of 8
        #expect(try first.run() == .stopped)
        GlobalRandom.seed(12345)  // nothing outside the run may matter
        let resumed = try ContrastiveTrainer.resume(folder: stoppedFolder, tokenizer: tokenizer, data: data, evaluation: nil)
        #expect(resumed.state.epoch == 1 && resumed.state.batch == 2)
        #expect(try resumed.run() == .finished)
        for ((name, a), (_, b)) in zip(straight.model.namedParameters(), resumed.model.namedParameters()) {
            #expect(a.toArray() == b.toArray(), "\(name) differs after resume")
        }
        #expect(straight.state.history.map(\.loss) == resumed.state.history.map(\.loss))

        // Other captions are other data: the run refuses to resume on them.
        let recaptioned = ImageCaptions(images: data.images, captions: data.captions.map { $0.map { $0 + "!" } })
        #expect(throws: TrainingError.self) {
            _ = try ContrastiveTrainer.resume(folder: stoppedFolder, tokenizer: tokenizer, data: recaptioned, evaluation: nil)
        }
    }
}
