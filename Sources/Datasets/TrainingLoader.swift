import Foundation
import Images
import Tensors

/// Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) over a batch, as timm's `Mixup` in batch mode: each
/// image is mixed with the batch's mirror image (index B-1-b) by one λ ~ Beta(α, α) per batch, and the targets
/// become λ·onehot(y) + (1-λ)·onehot(y_mirror). With both on, a batch gets CutMix with `switchProbability`.
public struct BatchMixing: Codable, Equatable, Sendable {
    public var mixupAlpha: Float = 0
    public var cutmixAlpha: Float = 0
    /// Probability that a batch is mixed at all.
    public var probability: Float = 1
    public var switchProbability: Float = 0.5

    public init(mixupAlpha: Float = 0, cutmixAlpha: Float = 0) {
        self.mixupAlpha = mixupAlpha
        self.cutmixAlpha = cutmixAlpha
    }

    public var enabled: Bool { mixupAlpha > 0 || cutmixAlpha > 0 }
}

/// Which part of each batch this process makes: all of it, or one rank's share when several ranks train together
/// (data parallelism). Of an in-memory set or a stream of files, rank r of N takes rows [r·B/N, (r+1)·B/N) of global
/// batch k, the batch one process would make, so N ranks see exactly the images of one process; shards are split
/// by rank instead (rank r reads shards r, r+N, ... of the epoch's shard order), as webdataset's `split_by_node`.
public struct DataShare: Sendable, Equatable {
    public var rank: Int
    public var ranks: Int
    public init(rank: Int = 0, ranks: Int = 1) {
        self.rank = rank
        self.ranks = ranks
    }
    public static let whole = DataShare()

    /// This rank's rows of a batch of `count`.
    public func rows(of count: Int) -> Range<Int> { (count * rank / ranks)..<(count * (rank + 1) / ranks) }
}

/// One batch for a training or evaluation step.
public struct TrainingBatch {
    /// Normalised images [B, 3, H, W].
    public let images: Tensor
    /// Each image's own class (for mixed images, the one with the larger share).
    public let labels: [Int]
    /// Soft targets [B, classes] when the batch was mixed; nil means one-hot `labels`.
    public let targets: Tensor?
    /// Position of the batch within its epoch.
    public let index: Int
    /// The data set's indices of the batch's images, in batch order (what else belongs to them: captions); a
    /// stream's positions in its epoch.
    public let members: [Int]
    /// Each image's captions when they come with the images (a stream of WebDataset `.txt` members); nil when the
    /// trainer holds them by `members`.
    public var captions: [[String]]? = nil
}

/// Batches of a data set held in memory, prepared on a background thread while the model computes.
///
/// Everything random is drawn from generators seeded by (seed, epoch) for the order, (seed, epoch, position in the
/// epoch) for each image's augmentation and (seed, epoch, batch) for mixing, so batch k of epoch e is the same
/// whichever batch a run starts at (that is what makes `--resume` exact), and an image is augmented the same whichever
/// rank's share it falls in.
public final class TrainingLoader: Sequence, IteratorProtocol {
    public struct Options: Sendable {
        public var batchSize: Int
        public var shuffle = true
        /// Drop the last, incomplete batch (training) or keep it (evaluation).
        public var dropLast = true
        public var augmentation = Augmentation.none
        public var mixing = BatchMixing()
        public var mean: [Float]
        public var std: [Float]
        public var seed: UInt64 = 0
        /// This process's part of each batch (`batchSize` stays the global batch).
        public var share = DataShare.whole

        public init(batchSize: Int, mean: [Float], std: [Float]) {
            self.batchSize = batchSize
            self.mean = mean
            self.std = std
        }
    }

    private let dataset: ImageDataset
    private let options: Options
    private let epoch: Int
    private let order: [Int]
    public let batchCount: Int
    private var nextToProduce: Int
    private var queue: PrefetchQueue<TrainingBatch>!

    /// Batches `startBatch..<batchCount` of `epoch`.
    public init(_ dataset: ImageDataset, options: Options, epoch: Int = 0, startBatch: Int = 0, background: Bool = true) {
        precondition(options.batchSize > 0, "batch size must be positive")
        precondition(options.mean.count == 3 && options.std.count == 3, "mean and std need three channels")
        self.dataset = dataset
        self.options = options
        self.epoch = epoch
        var indices = Array(0..<dataset.count)
        if options.shuffle {
            var rng = SeededGenerator(seed: Self.mix(options.seed, UInt64(epoch), 0))
            indices.shuffle(using: &rng)
        }
        order = indices
        batchCount =
            options.dropLast
            ? dataset.count / options.batchSize
            : (dataset.count + options.batchSize - 1) / options.batchSize
        nextToProduce = startBatch
        // The queue's producer holds the loader weakly: dropping the loader cancels the thread.
        queue = PrefetchQueue(name: "SwiftViT training loader", background: background) { [weak self] in self?.produceNext() }
    }

    deinit { cancel() }

    /// Stops the background thread (when a consumer leaves before the last batch).
    public func cancel() { queue.cancel() }

    /// Cancels and waits for the background thread to return (before a process exits).
    public func stop() { queue.cancelAndWait() }

    public func next() -> TrainingBatch? { queue.next() }

    private func produceNext() -> TrainingBatch? {
        guard nextToProduce < batchCount else { return nil }
        defer { nextToProduce += 1 }
        return makeBatch(nextToProduce)
    }

    /// HWC bytes -> CHW floats, (x / 255 - mean) / std, at `target` (3 · H · W floats).
    static func write(_ image: RGBImage, into target: UnsafeMutablePointer<Float>, mean: [Float], std: [Float]) {
        let plane = image.width * image.height
        image.pixels.withUnsafeBufferPointer { p in
            for c in 0..<3 {
                let scale = 1 / (255 * std[c]), shift = mean[c] / std[c]
                let channel = target + c * plane
                for k in 0..<plane { channel[k] = Float(p[3 * k + c]) * scale - shift }
            }
        }
    }

    /// Images of one size, normalised, as a batch [B, 3, H, W] (no augmentation).
    public static func normalisedBatch(_ images: [RGBImage], mean: [Float], std: [Float]) -> Tensor {
        precondition(!images.isEmpty, "a batch of no images")
        let (w, h) = (images[0].width, images[0].height)
        let batch = Tensor(uninitializedShape: [images.count, 3, h, w])
        for (b, image) in images.enumerated() {
            precondition(image.width == w && image.height == h, "a batch of images of different sizes")
            write(image, into: batch.pointer + b * 3 * w * h, mean: mean, std: std)
        }
        return batch
    }

    /// Seeds for (seed, epoch, batch) that differ in every argument (SplitMix64 then scrambles them).
    public static func mix(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 {
        a &* 0x9E37_79B9_7F4A_7C15 ^ (b &+ 1) &* 0xBF58_476D_1CE4_E5B9 ^ (c &+ 1) &* 0x94D0_49BB_1331_11EB
    }

    /// Augments, normalises, erases and mixes batch `index`.
    func makeBatch(_ index: Int) -> TrainingBatch {
        let first = index * options.batchSize
        let global = first..<Swift.min(first + options.batchSize, order.count)
        let rows = options.share.rows(of: global.count)
        let members = Array(order[(global.lowerBound + rows.lowerBound)..<(global.lowerBound + rows.upperBound)])
        let (w, h) = (dataset.width, dataset.height)
        let plane = w * h
        let images = Tensor(uninitializedShape: [members.count, 3, h, w])
        let out = images.pointer
        for (b, i) in members.enumerated() {
            let position = global.lowerBound + rows.lowerBound + b
            var draws = SeededGenerator(seed: Self.mix(options.seed ^ 0xA116_0000, UInt64(epoch), UInt64(position)))
            let image = options.augmentation.apply(dataset.image(i), using: &draws)
            Self.write(image, into: out + b * 3 * plane, mean: options.mean, std: options.std)
            if options.augmentation.randomErasing > 0 && draws.nextFloat() < options.augmentation.randomErasing {
                Self.erase(out + b * 3 * plane, width: w, height: h, using: &draws)
            }
        }
        // Mixing pairs images within the batch this process holds (each rank's share, as timm's Mixup under DDP).
        var rng = SeededGenerator(seed: Self.mix(options.seed &+ UInt64(options.share.rank) << 40, UInt64(epoch), UInt64(index) + 1))
        let labels = members.map { dataset.labels[$0] }
        var targets: Tensor?
        if options.mixing.enabled && members.count > 1 && rng.nextFloat() < options.mixing.probability {
            targets = Self.mix(images, labels: labels, classes: dataset.classNames.count, mixing: options.mixing, using: &rng)
        }
        return TrainingBatch(images: images, labels: labels, targets: targets, index: index, members: members)
    }

    /// timm's RandomErasing in pixel mode: one rectangle of 2%-33% of the area, aspect ratio 0.3-3.3, filled with
    /// standard normal noise (the images are already normalised).
    static func erase(_ image: UnsafeMutablePointer<Float>, width: Int, height: Int, using rng: inout SeededGenerator) {
        let area = Float(width * height)
        for _ in 0..<10 {
            let target = area * (0.02 + rng.nextFloat() * (1.0 / 3 - 0.02))
            let ratio = exp(log(Float(0.3)) + rng.nextFloat() * (log(Float(1 / 0.3)) - log(Float(0.3))))
            let eh = Int((target * ratio).squareRoot().rounded()), ew = Int((target / ratio).squareRoot().rounded())
            guard ew < width && eh < height && ew > 0 && eh > 0 else { continue }
            let top = Int(rng.next() % UInt64(height - eh + 1)), left = Int(rng.next() % UInt64(width - ew + 1))
            for c in 0..<3 {
                for y in top..<(top + eh) {
                    for x in left..<(left + ew) { image[(c * height + y) * width + x] = rng.nextNormal() }
                }
            }
            return
        }
    }

    /// Mixes `images` in place with their mirror images and returns the soft targets [B, classes].
    static func mix(_ images: Tensor, labels: [Int], classes: Int, mixing: BatchMixing, using rng: inout SeededGenerator) -> Tensor {
        let useCutmix = mixing.cutmixAlpha > 0 && (mixing.mixupAlpha <= 0 || rng.nextFloat() < mixing.switchProbability)
        var lambda = Self.beta(useCutmix ? mixing.cutmixAlpha : mixing.mixupAlpha, using: &rng)
        let (n, h, w) = (images.shape[0], images.shape[2], images.shape[3])
        let unmixed = images.copy()  // read while `images` is overwritten
        defer { withExtendedLifetime(unmixed) {} }
        let source = unmixed.pointer
        let out = images.pointer
        let imageSize = 3 * h * w
        if useCutmix {
            // A box of (1-λ) of the area at a uniform centre, clipped; λ becomes the share actually kept.
            let cut = (1 - lambda).squareRoot()
            let (bh, bw) = (Int(Float(h) * cut), Int(Float(w) * cut))
            let cy = Int(rng.next() % UInt64(h)), cx = Int(rng.next() % UInt64(w))
            let (y0, y1) = (Swift.max(cy - bh / 2, 0), Swift.min(cy + bh / 2, h))
            let (x0, x1) = (Swift.max(cx - bw / 2, 0), Swift.min(cx + bw / 2, w))
            for b in 0..<n {
                let other = source + (n - 1 - b) * imageSize
                for c in 0..<3 {
                    for y in y0..<y1 {
                        for x in x0..<x1 { out[b * imageSize + (c * h + y) * w + x] = other[(c * h + y) * w + x] }
                    }
                }
            }
            lambda = 1 - Float((y1 - y0) * (x1 - x0)) / Float(h * w)
        } else {
            for b in 0..<n {
                let mine = source + b * imageSize, other = source + (n - 1 - b) * imageSize
                for k in 0..<imageSize { out[b * imageSize + k] = lambda * mine[k] + (1 - lambda) * other[k] }
            }
        }
        var targets = [Float](repeating: 0, count: n * classes)
        for b in 0..<n {
            targets[b * classes + labels[b]] += lambda
            targets[b * classes + labels[n - 1 - b]] += 1 - lambda
        }
        return Tensor(targets, shape: [n, classes])
    }

    /// Beta(α, α) as X / (X + Y) with X, Y ~ Gamma(α).
    static func beta(_ alpha: Float, using rng: inout SeededGenerator) -> Float {
        let x = gamma(alpha, using: &rng), y = gamma(alpha, using: &rng)
        return x + y > 0 ? x / (x + y) : 0.5
    }

    /// Gamma(α, 1) by Marsaglia and Tsang; α < 1 through Gamma(α + 1) · U^(1/α).
    static func gamma(_ alpha: Float, using rng: inout SeededGenerator) -> Float {
        if alpha < 1 {
            let u = Swift.max(rng.nextFloat(), .leastNonzeroMagnitude)
            return gamma(alpha + 1, using: &rng) * pow(u, 1 / alpha)
        }
        let d = alpha - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x: Float, v: Float
            repeat { x = rng.nextNormal(); v = 1 + c * x } while v <= 0
            v = v * v * v
            let u = rng.nextFloat()
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if log(Swift.max(u, .leastNonzeroMagnitude)) < 0.5 * x * x + d * (1 - v + log(v)) { return d * v }
        }
    }
}
