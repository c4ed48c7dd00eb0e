import Foundation
import Tensors

extension WebDataset {
    /// The samples of one shard read as a stream (memory: one sample): consecutive members sharing a key.
    public final class SampleReader {
        private let tar: TarReader
        private var pending: Sample?
        /// A read that failed after a sample was gathered: thrown once that sample is handed out.
        private var failure: Error?

        public init(_ shard: URL) throws { tar = try TarReader(shard) }

        /// The next sample, or nil at the shard's end. A damaged archive throws after the samples before the damage.
        public func next() throws -> Sample? {
            if let failure {
                self.failure = nil
                throw failure
            }
            while let (path, contents) = try nextMember() {
                guard let (key, ext) = keyAndExtension(path) else { continue }
                if var sample = pending, sample.key == key, sample.members[ext] == nil {
                    sample.members[ext] = contents
                    pending = sample
                    continue
                }
                let finished = pending
                pending = Sample(key: key, members: [ext: contents], shard: tar.source.path)
                if let finished { return finished }
            }
            defer { pending = nil }
            if pending == nil, let failure {
                self.failure = nil
                throw failure
            }
            return pending
        }

        /// The next member; a failure is kept for later while a gathered sample waits to be handed out.
        private func nextMember() throws -> (path: String, contents: Data)? {
            do { return try tar.next() } catch {
                guard pending != nil else { throw error }
                failure = error
                return nil
            }
        }
    }

    /// One epoch's samples over a list of shards, shuffled as webdataset shuffles them (`shardshuffle`, then
    /// `shuffle(bufsize, initial)`): the shard order is a permutation drawn from (seed, epoch); the samples pass a
    /// buffer of `bufferSize` from which each next one is drawn at random once `initialFill` are in it. The same
    /// shards, seed and epoch give the same sequence; `skip` drops its first samples unseen (a run resumed
    /// mid-epoch continues the sequence). Without `shuffleShards` and with a buffer of 1 the samples come in order
    /// (evaluation).
    ///
    /// A shard that cannot be read (missing, truncated, not a tar archive) ends there: the samples read before the
    /// damage are used, the problem is counted in `problems` (one line naming the shard), and the stream goes on
    /// with the next shard.
    public final class ShuffledStream {
        public let shardOrder: [URL]
        private let bufferSize: Int
        private let initialFill: Int
        private var rng: SeededGenerator
        private var buffer: [Sample] = []
        private var shardIndex = 0
        private var reader: SampleReader?
        private var exhausted = false
        private var samplesFromShard = 0
        /// What went wrong so far, a line each.
        public private(set) var problems: [String] = []
        /// Samples handed out (skipped ones included).
        public private(set) var position = 0

        public init(
            shards: [URL], seed: UInt64, epoch: Int, bufferSize: Int = 1000, initialFill: Int = 100, skip: Int = 0,
            shuffleShards: Bool = true, share: DataShare = .whole
        ) {
            var order = SeededGenerator(seed: seed &* 0x9E37_79B9 &+ UInt64(epoch) &* 7_919 &+ 0x5EED)
            let epochOrder = shuffleShards ? shards.shuffled(using: &order) : shards
            // Of several ranks, each reads every N-th shard of the epoch's order (webdataset's split_by_node).
            shardOrder = stride(from: share.rank, to: epochOrder.count, by: share.ranks).map { epochOrder[$0] }
            self.bufferSize = max(bufferSize, 1)
            self.initialFill = min(max(initialFill, 1), max(bufferSize, 1))
            rng = SeededGenerator(seed: (seed &+ UInt64(share.rank) << 40) &* 0x2545_F491 &+ UInt64(epoch) &* 104_729 &+ 0xB0FF)
            for _ in 0..<skip where next() != nil {}
        }

        /// The next sample of the epoch, or nil at its end.
        public func next() -> Sample? {
            // webdataset's _shuffle: add one, top up by one more while the buffer is short, draw once it holds the
            // initial fill; at the end, draw the rest.
            while let sample = readSample() {
                buffer.append(sample)
                if buffer.count < bufferSize, let more = readSample() { buffer.append(more) }
                if buffer.count >= initialFill { break }
            }
            guard !buffer.isEmpty else { return nil }
            let k = Int(rng.next() % UInt64(buffer.count))
            buffer.swapAt(k, buffer.count - 1)
            position += 1
            return buffer.removeLast()
        }

        /// The next sample from the shards in order; nil when all are read. A shard that ends without a sample (empty)
        /// is reported as one.
        private func readSample() -> Sample? {
            while !exhausted {
                if reader == nil {
                    guard shardIndex < shardOrder.count else {
                        exhausted = true
                        return nil
                    }
                    let shard = shardOrder[shardIndex]
                    shardIndex += 1
                    do { reader = try SampleReader(shard) } catch {
                        problems.append("\(error)")
                        continue
                    }
                    samplesFromShard = 0
                }
                do {
                    if let sample = try reader?.next() {
                        samplesFromShard += 1
                        return sample
                    }
                    if samplesFromShard == 0 { problems.append("\(shardOrder[shardIndex - 1].path): holds no samples (an empty shard)") }
                } catch {
                    problems.append("\(error)")
                }
                reader = nil
            }
            return nil
        }
    }
}
