import CLIP
import Datasets
import Foundation
import Images
import Tensors
import TestSupport
import Testing
import Training

/// Training on a stream: the run loop batches WebDataset shards as it batches a set in memory, and `--resume`
/// continues a streamed run to the bit.
@Suite(.serialized) struct StreamedTrainingTests {
    /// `data` as PNG shards of 16 samples; `captions` adds a `.txt` to each.
    static func shards(_ data: ImageDataset, in folder: URL, captions: [[String]]? = nil) throws -> [URL] {
        var writer = try ShardWriter(folder: folder, prefix: "train", maxCount: 16)
        for i in 0..<data.count {
            let png = try PNG.encode(data.image(i).pixels, width: data.width, height: data.height, channels: 3)
            var members: [(ext: String, data: Data)] = [("cls", Data("\(data.labels[i])".utf8)), ("png", png)]
            if let captions { members.append(("txt", Data(captions[i].joined(separator: "\n").utf8))) }
            try writer.write(key: String(format: "%05d", i), members: members)
        }
        return try writer.finish().map { folder.appendingPathComponent($0.name) }
    }

    static func stream(_ shards: [URL], count: Int, classNames: [String], needs: StreamedImages.Needs) -> StreamedImages {
        var settings = StreamedImages.Settings()
        (settings.workers, settings.shuffleBuffer, settings.shuffleInitial) = (2, 20, 5)
        return StreamedImages(
            .shards(shards), count: count, classNames: classNames, size: ImageSizing.Resize(size: 8), needs: needs, settings: settings)
    }

    /// Two epochs straight, and the same stopped inside each epoch and resumed, end with the same weights and
    /// records, with every random part of the recipe on.
    @Test func aStreamedRunResumesExactly() throws {
        var options = TrainingOptions()
        (options.epochs, options.batchSize, options.warmupEpochs, options.emaDecay) = (2, 16, 0.5, 0.9)
        options.augmentation.randAugmentOps = 2
        options.augmentation.randomErasing = 0.5
        options.mixing = BatchMixing(mixupAlpha: 0.8, cutmixAlpha: 1)
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = quadrantDataset(count: 96, seed: 4)
        let shards = try Self.shards(data, in: folder.appendingPathComponent("shards"))
        let images = Self.stream(shards, count: 96, classNames: data.classNames, needs: .label)
        let validation = quadrantDataset(count: 32, seed: 5)

        let once = try Trainer(
            model: try tinyModel(seed: 9, dropPath: 0.2), options: options, trainSet: images, validationSet: validation,
            folder: folder.appendingPathComponent("once"))
        #expect(try once.run() == .finished)
        let split = folder.appendingPathComponent("split")
        let first = try Trainer(
            model: try tinyModel(seed: 9, dropPath: 0.2), options: options, trainSet: images, validationSet: validation, folder: split)
        first.stepLimit = 4
        #expect(try first.run() == .stopped)
        let second = try Trainer.resume(folder: split, trainSet: images, validationSet: validation)
        second.stepLimit = 5
        #expect(try second.run() == .stopped)
        let third = try Trainer.resume(folder: split, trainSet: images, validationSet: validation)
        #expect(try third.run() == .finished)
        let differing = zip(once.model.namedParameters(), third.model.namedParameters())
            .filter { $0.tensor.toArray() != $1.tensor.toArray() }.map(\.0.name)
        #expect(differing.isEmpty, "weights differ: \(differing)")
        #expect(once.state.history.map(\.trainLoss) == third.state.history.map(\.trainLoss))

        // Another data set (a shard list of one shard fewer) is refused by the resume.
        let fewer = Self.stream(Array(shards.dropLast()), count: 80, classNames: data.classNames, needs: .label)
        #expect(throws: TrainingError.self) { _ = try Trainer.resume(folder: split, trainSet: fewer, validationSet: validation) }
    }

    /// A contrastive run reads each sample's captions from its `.txt` member, beside its image; pre-training reads
    /// the same shards unlabelled. Each runs an epoch to a finite loss.
    @Test func contrastiveTrainingAndPretrainingReadShards() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let pairs = colourCaptions(count: 64, seed: 5)
        let names = ["red", "green", "blue", "yellow"]
        let shards = try Self.shards(pairs.images, in: folder.appendingPathComponent("shards"), captions: pairs.captions)
        let stream = Self.stream(shards, count: 64, classNames: names, needs: .caption)
        var options = TrainingLoader.Options(batchSize: 16, mean: [0, 0, 0], std: [1, 1, 1])
        options.seed = 3
        let batches = stream.batches(options, epoch: 0, startBatch: 0)
        var seen = 0
        while let batch = try batches.next() {
            for (label, captions) in zip(batch.labels, batch.captions ?? []) {
                #expect(captions.count == 3 && captions.allSatisfy { $0.contains(names[label]) }, "\(captions) for \(names[label])")
                seen += 1
            }
        }
        batches.stop()
        #expect(seen == 64)
        let trainer = try ContrastiveTrainer(
            model: tinyCLIP(seed: 1), tokenizer: try CLIPTokenizer.openAI(), options: contrastiveOptions(epochs: 1), data: stream,
            folder: folder.appendingPathComponent("clip"))
        #expect(try trainer.run() == .finished)
        #expect(trainer.state.history.count == 1 && trainer.state.history[0].loss.isFinite)

        let unlabelled = Self.stream(shards, count: 64, classNames: ["any"], needs: .nothing)
        let pretrainer = try Pretrainer(
            model: try tinyAutoencoder(seed: 2, lossPredictor: false), options: pretrainingOptions(.mae, epochs: 1), data: unlabelled,
            folder: folder.appendingPathComponent("mae"))
        #expect(try pretrainer.run() == .finished)
        #expect(pretrainer.state.history.count == 1 && pretrainer.state.history[0].loss.isFinite)
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("mae/reconstruction.png").path))
    }
}
