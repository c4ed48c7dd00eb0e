import Foundation
import Images
import Tensors
import TestSupport
import Testing

@testable import Datasets

/// Streamed training data: batches that do not depend on the decoding threads or on where a run starts, bad samples
/// skipped and counted, and the same images whether a set is streamed or held in memory.
@Suite struct StreamedImagesTests {
    /// `count` random 8x8 images of 3 classes (a few bright pixels per class, so labels can be checked).
    static func images(_ count: Int, seed: UInt64) -> ImageDataset {
        var rng = SeededGenerator(seed: seed)
        var pixels: [UInt8] = [], labels: [Int] = []
        for i in 0..<count {
            labels.append(i % 3)
            pixels += (0..<(8 * 8 * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
        return ImageDataset(width: 8, height: 8, pixels: pixels, labels: labels, classNames: ["a", "b", "c"])
    }

    /// `data` as PNG shards of `perShard` samples with sizes.json and _info.json.
    static func writeShards(_ data: ImageDataset, to folder: URL, perShard: Int, prefix: String = "train") throws -> [URL] {
        var writer = try ShardWriter(folder: folder, prefix: prefix, maxCount: perShard)
        for i in 0..<data.count {
            let png = try PNG.encode(data.image(i).pixels, width: data.width, height: data.height, channels: 3)
            try writer.write(key: String(format: "%06d", i), members: [("png", png), ("cls", Data("\(data.labels[i])".utf8))])
        }
        let sizes = try writer.finish()
        try ShardWriter.writeIndex(in: folder, sizes: sizes, classNames: data.classNames)
        return sizes.map { folder.appendingPathComponent($0.name) }
    }

    static func stream(_ shards: [URL], count: Int, workers: Int, maxBad: Double = 0.01) -> StreamedImages {
        var settings = StreamedImages.Settings()
        (settings.workers, settings.shuffleBuffer, settings.shuffleInitial, settings.maxBadFraction) = (workers, 10, 4, maxBad)
        return StreamedImages(
            .shards(shards), count: count, classNames: ["a", "b", "c"], size: ImageSizing.Resize(size: 8), needs: .label, settings: settings
        )
    }

    static func options(batchSize: Int = 8) -> TrainingLoader.Options {
        var options = TrainingLoader.Options(batchSize: batchSize, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        options.seed = 7
        options.augmentation.cropPadding = 2
        options.augmentation.randAugmentOps = 2
        options.augmentation.randomErasing = 0.5
        options.mixing = BatchMixing(mixupAlpha: 0.8, cutmixAlpha: 1)
        return options
    }

    static func all(_ batches: any TrainingBatches) throws -> [TrainingBatch] {
        defer { batches.stop() }
        var out: [TrainingBatch] = []
        while let batch = try batches.next() { out.append(batch) }
        return out
    }

    /// One and two decoding threads give the same batches; a loader started at batch k gives the epoch's batch k on
    /// (what `--resume` relies on); each epoch holds every sample once, in another order.
    @Test func batchesDependOnSeedEpochAndPositionOnly() throws {
        let folder = try temporaryFolder("swiftvit-stream")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = Self.images(60, seed: 1)
        let shards = try Self.writeShards(data, to: folder, perShard: 16)
        let one = try Self.all(Self.stream(shards, count: 60, workers: 1).batches(Self.options(), epoch: 2, startBatch: 0))
        let two = try Self.all(Self.stream(shards, count: 60, workers: 2).batches(Self.options(), epoch: 2, startBatch: 0))
        #expect(one.count == 7 && two.count == 7)
        for (a, b) in zip(one, two) {
            let same = a.images.toArray() == b.images.toArray() && a.labels == b.labels && a.targets?.toArray() == b.targets?.toArray()
            #expect(same, "batch \(a.index) differs between one and two decoding threads")
        }
        let resumed = try Self.all(Self.stream(shards, count: 60, workers: 2).batches(Self.options(), epoch: 2, startBatch: 4))
        #expect(resumed.map(\.index) == [4, 5, 6])
        for (a, b) in zip(one.dropFirst(4), resumed) {
            let same = a.images.toArray() == b.images.toArray() && a.members == b.members
            #expect(same, "batch \(a.index) differs when the epoch starts there")
        }

        // Unshuffled and unaugmented, every image comes once, as it was written.
        var plain = TrainingLoader.Options(batchSize: 8, mean: [0, 0, 0], std: [1, 1, 1])
        (plain.shuffle, plain.dropLast) = (false, false)
        let inOrder = try Self.all(Self.stream(shards, count: 60, workers: 2).batches(plain, epoch: 0, startBatch: 0))
        #expect(inOrder.flatMap(\.labels) == data.labels)
        let memory = try Self.all(data.batches(plain, epoch: 0, startBatch: 0))
        let sameAsInMemory = inOrder.map { $0.images.toArray() } == memory.map { $0.images.toArray() }
        #expect(sameAsInMemory, "the unshuffled stream's batches differ from the set's in memory")
        // Two epochs: the same samples in other orders (labels as a multiset; ordering by shard and buffer differs).
        var unaugmented = plain
        (unaugmented.shuffle, unaugmented.dropLast) = (true, false)
        let e0 = try Self.all(Self.stream(shards, count: 60, workers: 2).batches(unaugmented, epoch: 0, startBatch: 0))
        let e1 = try Self.all(Self.stream(shards, count: 60, workers: 2).batches(unaugmented, epoch: 1, startBatch: 0))
        #expect(e0.flatMap(\.labels).sorted() == data.labels.sorted() && e1.flatMap(\.labels).sorted() == data.labels.sorted())
        #expect(e0.flatMap(\.labels) != e1.flatMap(\.labels))
    }

    /// A broken image, a `.cls` that is not a class index, a sample without an image and a truncated shard are
    /// each reported with the shard and skipped; past `maxBadFraction` the run fails with one line.
    @Test func badSamplesAreSkippedCountedAndLimited() throws {
        let folder = try temporaryFolder("swiftvit-stream-bad")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = Self.images(40, seed: 2)
        var shards = try Self.writeShards(data, to: folder, perShard: 40)
        var writer = try ShardWriter(folder: folder, prefix: "bad", maxCount: 10)
        let good = try PNG.encode(data.image(0).pixels, width: 8, height: 8, channels: 3)
        try writer.write(key: "broken", members: [("png", good.prefix(40)), ("cls", Data("1".utf8))])
        try writer.write(key: "badlabel", members: [("png", good), ("cls", Data("cat".utf8))])
        try writer.write(key: "nolabel", members: [("png", good)])
        try writer.write(key: "noimage", members: [("cls", Data("2".utf8))])
        try writer.write(key: "outside", members: [("png", good), ("cls", Data("9".utf8))])
        shards += try writer.finish().map { folder.appendingPathComponent($0.name) }
        // A shard cut in the middle of its second member.
        let cut = folder.appendingPathComponent("cut.tar")
        try Data(try Data(contentsOf: shards[0]).prefix(1500)).write(to: cut)
        shards.append(cut)
        let empty = folder.appendingPathComponent("empty.tar")
        try Data(count: 1024).write(to: empty)
        shards.append(empty)

        // 40 good samples, 5 bad ones, and the cut shard's first sample without its label.
        let lenient = Self.stream(shards, count: 46, workers: 2, maxBad: 1)
        let problems = Problems()
        lenient.onProblem = { problems.add($0) }
        var options = Self.options(batchSize: 5)
        options.dropLast = false
        let batches = try Self.all(lenient.batches(options, epoch: 0, startBatch: 0))
        let lines = problems.lines
        #expect(batches.reduce(0) { $0 + $1.labels.count } == 40, "\(lines)")
        for expected in [
            "broken: ", "member badlabel.cls is 'cat'", "nolabel has no .cls", "noimage has no image", "outside.cls is 9, beyond"
        ] {
            #expect(lines.contains { $0.contains(expected) && $0.contains("bad-000000.tar") }, "\(expected) not in \(lines)")
        }
        #expect(lines.contains { $0.contains("cut.tar") && $0.contains("truncated") }, "\(lines)")
        #expect(lines.contains { $0.contains("empty.tar: holds no samples") }, "\(lines)")

        let strict = Self.stream(shards, count: 46, workers: 2, maxBad: 0.01)
        #expect(throws: StreamError.self) { _ = try Self.all(strict.batches(options, epoch: 0, startBatch: 0)) }
    }

    /// A shard list naming a missing shard is refused up front, with the shard's name.
    @Test func aShardListNamingAMissingShardIsAnError() throws {
        let folder = try temporaryFolder("swiftvit-stream-list")
        defer { try? FileManager.default.removeItem(at: folder) }
        _ = try Self.writeShards(Self.images(20, seed: 3), to: folder, perShard: 10)
        let listed = try WebDataset.shardParts(folder.path + "/train-{000000..000001}.tar")
        #expect(listed?[.train]?.count == 2)
        #expect { try WebDataset.shardParts(folder.path + "/train-{000000..000002}.tar") } throws: { error in
            "\(error)".contains("train-000002.tar: no such shard")
        }
        #expect(try WebDataset.shardParts(folder.path)?[.train]?.count == 2)
    }

    /// `auto` reads a set that fits in memory, and streams it when it does not (here: a budget of no bytes); both
    /// give the same images. A folder of shards without index files is counted by reading it.
    @Test func dataReadingChoosesMemoryOrStream() throws {
        let folder = try temporaryFolder("swiftvit-stream-auto")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = Self.images(30, seed: 4)
        _ = try Self.writeShards(data, to: folder.appendingPathComponent("shards"), perShard: 8)
        var reading = DataReading()
        let fits = try reading.load(folder.appendingPathComponent("shards").path, parts: [.train], sizing: .native, needs: .label)
        guard case .memory(let memory)? = fits[.train] else { Issue.record("a set that fits is read in memory"); return }
        #expect(memory.pixels == data.pixels && memory.labels == data.labels && memory.classNames == data.classNames)

        reading.memoryBudget = 0
        try FileManager.default.removeItem(at: folder.appendingPathComponent("shards/sizes.json"))
        try FileManager.default.removeItem(at: folder.appendingPathComponent("shards/_info.json"))
        let big = try reading.load(folder.appendingPathComponent("shards").path, parts: [.train], sizing: .native, needs: .label)
        guard case .streamed(let stream)? = big[.train] else { Issue.record("a set over the budget is streamed"); return }
        #expect(stream.count == 30 && stream.classNames == ["0", "1", "2"] && stream.width == 8)
        #expect(stream.readingSummary.hasPrefix("streamed from 4 shards"))

        // An image folder over the budget streams its files, labelled by their class folders.
        for i in 0..<data.count {
            let classFolder = folder.appendingPathComponent("images/\(data.classNames[data.labels[i]])")
            try FileManager.default.createDirectory(at: classFolder, withIntermediateDirectories: true)
            try PNG.write(data.image(i), to: classFolder.appendingPathComponent(String(format: "%03d.png", i)))
        }
        let files = try reading.load(folder.appendingPathComponent("images").path, parts: [.train], sizing: .native, needs: .label)
        guard case .streamed(let fileStream)? = files[.train] else { Issue.record("an image folder over the budget is streamed"); return }
        let inMemory = try ImageDataset.load(folder.appendingPathComponent("images"), parts: [.train])[.train]!
        var plain = TrainingLoader.Options(batchSize: 7, mean: [0, 0, 0], std: [1, 1, 1])
        (plain.shuffle, plain.dropLast) = (false, false)
        let streamed = try Self.all(fileStream.batches(plain, epoch: 0, startBatch: 0))
        let held = try Self.all(inMemory.batches(plain, epoch: 0, startBatch: 0))
        let sameImages = streamed.map { $0.images.toArray() } == held.map { $0.images.toArray() }
        #expect(sameImages, "the streamed files' batches differ from the folder's in memory")
        #expect(streamed.flatMap(\.labels) == inMemory.labels)
    }
}

/// Lines gathered from loader threads.
final class Problems: @unchecked Sendable {
    private let lock = NSLock()
    private var gathered: [String] = []
    func add(_ line: String) { lock.withLock { gathered.append(line) } }
    var lines: [String] { lock.withLock { gathered } }
}
