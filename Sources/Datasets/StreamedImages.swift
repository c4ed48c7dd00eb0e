import Foundation
import Images
import Tensors

/// Training images read and decoded batch by batch instead of once at load: WebDataset shards (how timm and
/// open_clip read data sets bigger than memory), or the files of an image folder too many to hold decoded. What
/// memory holds is the shuffle buffer of encoded samples and the batches in flight, whatever the number of images.
///
/// Each batch's samples are decoded, resized to the training size, augmented and normalised by `workers` threads;
/// every random draw comes from (seed, epoch, position), so the batches do not depend on the number of threads and
/// a resumed run continues the same sequence. A sample that cannot be used (a broken image, a `.cls` that is not a
/// class index, no caption) is skipped and reported with its shard and member; a run fails once more than
/// `maxBadFraction` of the samples read are bad.
public final class StreamedImages: TrainingImages, @unchecked Sendable {
    /// Where the encoded images come from.
    public enum Source {
        /// WebDataset shards: read in order within each, the shard order shuffled per epoch, then a shuffle buffer.
        case shards([URL])
        /// Image files (an image folder or archive), any of them readable at any time: shuffled as a whole per epoch.
        case files([EncodedFile])
    }

    /// An image file of a folder source: its path (for messages and the run's identity), label and bytes on demand.
    public struct EncodedFile {
        /// Its path in the folder (what identifies it) and where it is (for messages).
        public var path: String
        public var location: String
        public var label: Int
        public var read: () throws -> Data
        public init(path: String, location: String, label: Int, read: @escaping () throws -> Data) {
            (self.path, self.location, self.label, self.read) = (path, location, label, read)
        }
    }

    /// What a sample must carry besides its image.
    public enum Needs: Sendable {
        /// A `.cls` class index (classification).
        case label
        /// A `.txt` caption (contrastive training).
        case caption
        /// Nothing (self-supervised pre-training).
        case nothing
    }

    /// How the stream is read.
    public struct Settings: Sendable, Equatable {
        /// Threads decoding each batch.
        public var workers = ProcessInfo.processInfo.activeProcessorCount
        /// webdataset's `shuffle(bufsize, initial)`: samples held to draw from, and held before the first draw
        /// (open_clip's defaults).
        public var shuffleBuffer = 5000
        public var shuffleInitial = 1000
        /// A training run fails when more than this fraction of the samples read in an epoch cannot be used.
        public var maxBadFraction = 0.01
        public init() {}
    }

    public let source: Source
    public let count: Int
    public let classNames: [String]
    public let resize: ImageSizing.Resize
    public let needs: Needs
    public let settings: Settings
    /// Called, from a loader's thread, with one line for each sample or shard skipped.
    public var onProblem: @Sendable (String) -> Void = { _ in }

    public init(_ source: Source, count: Int, classNames: [String], size resize: ImageSizing.Resize, needs: Needs, settings: Settings) {
        (self.source, self.count, self.classNames, self.resize, self.needs, self.settings) = (
            source, count, classNames, resize, needs, settings
        )
    }

    public var width: Int { resize.size }
    public var height: Int { resize.size }

    public var identity: [String] {
        switch source {
        case .shards(let shards): return shards.map(\.lastPathComponent) + ["\(count) samples"]
        case .files(let files): return files.map(\.path)
        }
    }

    public var readingSummary: String {
        let threads = "\(settings.workers) decoding thread\(settings.workers == 1 ? "" : "s")"
        switch source {
        case .shards(let shards): return "streamed from \(shards.count) shard\(shards.count == 1 ? "" : "s") by \(threads)"
        case .files: return "streamed from the files by \(threads)"
        }
    }

    public func batches(_ options: TrainingLoader.Options, epoch: Int, startBatch: Int) -> any TrainingBatches {
        StreamLoader(self, options: options, epoch: epoch, startBatch: startBatch)
    }

    public func figureImages(_ n: Int) throws -> [RGBImage] {
        let cursor = SampleCursor(self, seed: 0, epoch: 0, shuffle: false, skip: 0)
        var images: [RGBImage] = []
        while images.count < n, let sample = cursor.next() {
            if let image = try? decode(sample.fetch()) { images.append(image) }
        }
        return images
    }

    /// The statistics of the first 512 images (decoding them all would be a pass over the data set).
    public func channelStatistics() throws -> (mean: [Float], std: [Float]) {
        let first = try figureImages(512)
        guard let size = first.first?.width else { throw StreamError("none of the first samples could be read") }
        return ImageDataset(
            width: size, height: size, pixels: first.flatMap(\.pixels), labels: first.map { _ in 0 }, classNames: ["any"]
        ).channelStatistics()
    }

    /// Every image decoded and resized, unaugmented, in the source's order: a set small enough to be faster in
    /// memory (`ImageDataset`). Bad samples are listed in `failures`.
    public func loadIntoMemory() throws -> ImageDataset {
        let cursor = SampleCursor(self, seed: 0, epoch: 0, shuffle: false, skip: 0)
        var pixels: [UInt8] = [], labels: [Int] = [], sources: [String] = [], failures: [FileError] = []
        while true {
            var chunk: [PendingSample] = []
            while chunk.count < 256, let sample = cursor.next() { chunk.append(sample) }
            if chunk.isEmpty { break }
            for (sample, result) in zip(chunk, decodeAll(chunk, augmentation: .none, seed: 0, epoch: 0)) {
                switch result {
                case .success(let (image, encoded)):
                    pixels += image.pixels
                    labels.append(encoded.label)
                    sources.append(encoded.name)
                case .failure(let error): failures.append(error.fileError(sample))
                }
            }
        }
        for problem in cursor.takeProblems() { onProblem(problem) }
        guard !labels.isEmpty else { throw StreamError("none of the samples could be read") }
        var dataset = ImageDataset(
            width: resize.size, height: resize.size, pixels: pixels, labels: labels, classNames: classNames, sources: sources)
        dataset.failures = failures
        return dataset
    }

    // MARK: Decoding

    /// A sample's image, label and captions, still encoded.
    struct EncodedSample {
        var image: Data
        var label: Int
        var captions: [String]?
        /// "shard-000003.tar:00001234" or the file's path.
        var name: String
    }

    /// A sample of the epoch's sequence: its position and how to get its bytes (on a decoding thread).
    struct PendingSample {
        var position: Int
        /// Where it is, for messages: "/data/shard-000003.tar:00001234", or the file's path.
        var location: String
        var fetch: () throws -> EncodedSample
    }

    /// The decoded image at the training size.
    func decode(_ sample: EncodedSample) throws -> RGBImage {
        resize.apply(try RGBImage(data: sample.image, source: URL(fileURLWithPath: sample.name)))
    }

    /// Decodes, resizes and augments `samples` on `settings.workers` threads; each image's draws come from (seed,
    /// epoch, position) alone.
    func decodeAll(_ samples: [PendingSample], augmentation: Augmentation, seed: UInt64, epoch: Int)
        -> [Result<(RGBImage, EncodedSample), SampleError>]
    {
        var results = [Result<(RGBImage, EncodedSample), SampleError>](
            repeating: .failure(SampleError("not decoded")), count: samples.count)
        let workers = max(1, min(settings.workers, samples.count))
        let lock = NSLock()
        let work = { (worker: Int) in
            for i in stride(from: worker, to: samples.count, by: workers) {
                let result: Result<(RGBImage, EncodedSample), SampleError>
                do {
                    let encoded = try samples[i].fetch()
                    var rng = SeededGenerator(seed: TrainingLoader.mix(seed ^ 0x57AE_A111, UInt64(epoch), UInt64(samples[i].position)))
                    result = .success((augmentation.apply(try self.decode(encoded), using: &rng), encoded))
                } catch let error as FileError {
                    result = .failure(SampleError(error.reason))
                } catch {
                    result = .failure(SampleError("\(error)"))
                }
                lock.withLock { results[i] = result }
            }
        }
        if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        return results
    }

    /// The encoded sample of a WebDataset sample, or why it cannot be used.
    func encoded(_ sample: WebDataset.Sample) throws -> EncodedSample {
        let shard = URL(fileURLWithPath: sample.shard)
        let name = "\(shard.lastPathComponent):\(sample.key)"
        guard let (image, _) = sample.image else {
            throw FileError(shard, "sample \(sample.key) has no image (.jpg, .jpeg, .png or .webp member)")
        }
        var label = 0
        var captions: [String]?
        switch needs {
        case .label:
            guard let value = try sample.label() else { throw FileError(shard, "sample \(sample.key) has no .cls label") }
            guard value < classNames.count else {
                throw FileError(shard, "member \(sample.key).cls is \(value), beyond the \(classNames.count) classes")
            }
            label = value
        case .caption:
            let lines = (sample.caption ?? "").split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }
            guard !lines.isEmpty else { throw FileError(shard, "sample \(sample.key) has no caption (.txt member)") }
            captions = lines
            // A label beside the caption is kept when it is one (it is not needed).
            if let value = try? sample.label(), value < classNames.count { label = value }
        case .nothing: break
        }
        return EncodedSample(image: image, label: label, captions: captions, name: name)
    }
}

/// Why a sample was skipped (its name is added where it is reported).
struct SampleError: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }

    func fileError(_ sample: StreamedImages.PendingSample) -> FileError {
        FileError(URL(fileURLWithPath: sample.location), reason)
    }
}

/// A stream that failed past what may be skipped.
public struct StreamError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One epoch's samples in order: a shuffled stream of shards, or a permutation of files.
final class SampleCursor {
    private let images: StreamedImages
    private var stream: WebDataset.ShuffledStream?
    private var order: [Int] = []
    private var position: Int
    private var reported = 0

    private let share: DataShare
    /// The global batch (files are shared out by rows of each global batch).
    private let batchSize: Int

    /// The epoch's samples from global position `skip` on (of shards: this rank's stream, from its `skip`-th sample).
    init(_ images: StreamedImages, seed: UInt64, epoch: Int, shuffle: Bool, skip: Int, share: DataShare = .whole, batchSize: Int = 1) {
        self.images = images
        self.share = share
        self.batchSize = max(batchSize, 1)
        position = skip
        switch images.source {
        case .shards(let shards):
            let settings = images.settings
            stream = WebDataset.ShuffledStream(
                shards: shards, seed: seed, epoch: epoch, bufferSize: shuffle ? settings.shuffleBuffer : 1,
                initialFill: shuffle ? settings.shuffleInitial : 1, skip: skip, shuffleShards: shuffle, share: share)
        case .files(let files):
            order = Array(0..<files.count)
            if shuffle {
                var rng = SeededGenerator(seed: TrainingLoader.mix(seed, UInt64(epoch), 0))
                order.shuffle(using: &rng)
            }
        }
    }

    /// The next sample, nil at the epoch's end.
    func next() -> StreamedImages.PendingSample? {
        if let stream {
            defer { position += 1 }
            guard let sample = stream.next() else { return nil }
            let images = self.images
            // Positions seed each image's augmentation: a rank's stream numbers its samples apart from the others'.
            return .init(position: position * share.ranks + share.rank, location: "\(sample.shard):\(sample.key)") {
                try images.encoded(sample)
            }
        }
        let mine = share.rows(of: batchSize)
        while position < order.count && !mine.contains(position % batchSize) { position += 1 }
        defer { position += 1 }
        guard case .files(let files) = images.source, position < order.count else { return nil }
        let file = files[order[position]]
        return .init(position: position, location: file.location) {
            .init(image: try file.read(), label: file.label, captions: nil, name: file.path)
        }
    }

    /// The shards found damaged since the last call, a line each.
    func takeProblems() -> [String] {
        guard let problems = stream?.problems, problems.count > reported else { return [] }
        defer { reported = problems.count }
        return Array(problems[reported...])
    }
}

/// One epoch of a stream as batches: samples [kB, (k+1)B) of the epoch's sequence make batch k, less those that
/// cannot be used; made on a background thread while the model computes.
final class StreamLoader: TrainingBatches {
    private let images: StreamedImages
    private let options: TrainingLoader.Options
    private let epoch: Int
    let batchCount: Int
    /// Samples in this process's part of each batch (all of it without data parallelism).
    private let localBatchSize: Int
    private var nextToProduce: Int
    private let cursor: SampleCursor
    private var read = 0
    private var bad = 0
    private var queue: PrefetchQueue<Result<TrainingBatch, Error>>!

    init(_ images: StreamedImages, options: TrainingLoader.Options, epoch: Int, startBatch: Int) {
        (self.images, self.options, self.epoch) = (images, options, epoch)
        let size = max(options.batchSize, 1)
        batchCount = options.dropLast ? images.count / size : (images.count + size - 1) / size
        nextToProduce = startBatch
        localBatchSize = options.share.rows(of: size).count
        // A rank's shard stream holds only its own samples: it skips its share of the batches already trained.
        let isShards: Bool
        if case .shards = images.source { isShards = true } else { isShards = false }
        cursor = SampleCursor(
            images, seed: options.seed, epoch: epoch, shuffle: options.shuffle, skip: startBatch * (isShards ? localBatchSize : size),
            share: options.share, batchSize: size)
        queue = PrefetchQueue(name: "SwiftViT stream loader") { [weak self] in self?.produceNext() }
    }

    deinit { queue.cancel() }

    func next() throws -> TrainingBatch? { try queue.next()?.get() }

    func stop() { queue.cancelAndWait() }

    private func produceNext() -> Result<TrainingBatch, Error>? {
        // A batch whose samples are all bad is skipped (its index with it).
        while nextToProduce < batchCount {
            let index = nextToProduce
            nextToProduce += 1
            var pending: [StreamedImages.PendingSample] = []
            while pending.count < localBatchSize, let sample = cursor.next() { pending.append(sample) }
            for problem in cursor.takeProblems() { images.onProblem(problem) }
            // The stream ended early (a damaged shard): a training epoch drops the incomplete batch.
            if pending.isEmpty || (options.dropLast && pending.count < localBatchSize) { return nil }
            let decoded = images.decodeAll(pending, augmentation: options.augmentation, seed: options.seed, epoch: epoch)
            var kept: [(image: RGBImage, sample: StreamedImages.EncodedSample, position: Int)] = []
            for (sample, result) in zip(pending, decoded) {
                switch result {
                case .success(let (image, encoded)): kept.append((image, encoded, sample.position))
                case .failure(let error):
                    bad += 1
                    images.onProblem("skipped: \(error.fileError(sample))")
                }
            }
            read += pending.count
            // Within the epoch the fraction is judged over at least 1,000 samples (a few bad ones early on are not
            // yet a fraction); at its end over all it read.
            let ended = nextToProduce == batchCount || pending.count < localBatchSize
            if Double(bad) > images.settings.maxBadFraction * Double(ended ? read : max(read, 1000)) {
                return .failure(
                    StreamError(
                        "\(bad) of the \(read) samples read in epoch \(epoch + 1) could not be used, more than the fraction \(images.settings.maxBadFraction) allowed (--max-bad-fraction)"
                    ))
            }
            if !kept.isEmpty { return .success(makeBatch(index, kept)) }
        }
        return nil
    }

    /// Normalises (and erases) each image on the decoding threads, then mixes the batch.
    private func makeBatch(_ index: Int, _ kept: [(image: RGBImage, sample: StreamedImages.EncodedSample, position: Int)]) -> TrainingBatch
    {
        let (w, h) = (images.width, images.height)
        let plane = w * h
        let batch = Tensor(uninitializedShape: [kept.count, 3, h, w])
        let out = UncheckedSendable(batch.pointer)
        let (options, epoch) = (self.options, self.epoch)
        let workers = max(1, min(images.settings.workers, kept.count))
        let work = { (worker: Int) in
            for b in stride(from: worker, to: kept.count, by: workers) {
                let target = out.value + b * 3 * plane
                TrainingLoader.write(kept[b].image, into: target, mean: options.mean, std: options.std)
                guard options.augmentation.randomErasing > 0 else { continue }
                var rng = SeededGenerator(seed: TrainingLoader.mix(options.seed ^ 0xE7A5_E000, UInt64(epoch), UInt64(kept[b].position)))
                if rng.nextFloat() < options.augmentation.randomErasing { TrainingLoader.erase(target, width: w, height: h, using: &rng) }
            }
        }
        if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        let labels = kept.map(\.sample.label)
        var targets: Tensor?
        var rng = SeededGenerator(
            seed: TrainingLoader.mix(options.seed &+ UInt64(options.share.rank) << 40, UInt64(epoch), UInt64(index) + 1))
        if options.mixing.enabled && kept.count > 1 && rng.nextFloat() < options.mixing.probability {
            targets = TrainingLoader.mix(batch, labels: labels, classes: images.classNames.count, mixing: options.mixing, using: &rng)
        }
        var result = TrainingBatch(images: batch, labels: labels, targets: targets, index: index, members: kept.map(\.position))
        if images.needs == .caption { result.captions = kept.map { $0.sample.captions ?? [] } }
        return result
    }
}
