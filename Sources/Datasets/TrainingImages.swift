import Foundation
import Images
import Tensors

/// The images a run loop (or an evaluation) batches: held in memory and decoded once (`ImageDataset`), or read and
/// decoded as they are needed (`StreamedImages`: WebDataset shards, or image files too many to hold decoded).
/// Either gives batch k of epoch e the same way whichever batch a run starts at, so `--resume` is exact with both.
public protocol TrainingImages {
    /// Images in one epoch (a stream's count comes from its index files or a counting pass).
    var count: Int { get }
    /// The size every batch has.
    var width: Int { get }
    var height: Int { get }
    var classNames: [String] { get }
    /// What identifies the images, a line each (a resumed run checks their digest): each image's source in memory; the
    /// shards and their count in a stream.
    var identity: [String] { get }
    /// How the images are read, for the log: "in memory" or "streamed from 12 shards by 2 decoding threads".
    var readingSummary: String { get }
    /// Batches `startBatch...` of `epoch`.
    func batches(_ options: TrainingLoader.Options, epoch: Int, startBatch: Int) -> any TrainingBatches
    /// Per-channel mean and standard deviation of the pixels scaled to [0, 1] (a new model's normalisation): over
    /// every image in memory, over the first images of a stream.
    func channelStatistics() throws -> (mean: [Float], std: [Float])
    /// Up to `n` images, unaugmented, at the batch size, for a figure: spread over the set in memory, a stream's first.
    func figureImages(_ n: Int) throws -> [RGBImage]
}

/// One epoch's batches, made ahead of the consumer on a background thread.
public protocol TrainingBatches: AnyObject {
    /// Batches in the epoch (a stream that ends early, a shard damaged, gives fewer).
    var batchCount: Int { get }
    /// The next batch, nil at the epoch's end; an error when the data fails past what may be skipped.
    func next() throws -> TrainingBatch?
    /// Cancels the background work and waits for it to return.
    func stop()
}

extension ImageDataset: TrainingImages {
    public var identity: [String] { sources }
    public var readingSummary: String { "in memory" }

    public func batches(_ options: TrainingLoader.Options, epoch: Int, startBatch: Int) -> any TrainingBatches {
        TrainingLoader(self, options: options, epoch: epoch, startBatch: startBatch)
    }

    public func figureImages(_ n: Int) throws -> [RGBImage] {
        let shown = Swift.min(n, count)
        return (0..<shown).map { image($0 * count / shown) }
    }
}

extension TrainingLoader: TrainingBatches {}
