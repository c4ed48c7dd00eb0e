import Datasets
import Foundation
import Parallel
import Tensors

/// Data-parallel training over the ranks of an MPI job, with PyTorch DistributedDataParallel's semantics:
///
/// - every rank holds the whole model; rank 0's parameters and buffers are broadcast before the first step;
/// - the recipe's batch is the global one: each rank trains on its share of each global batch (`TrainingLoader`'s
///   `share`), so the rules that depend on the batch (MAE's `blr x batch / 256`, the schedule's steps) see the global
///   batch, and N ranks of B/N images step as one process of B would;
/// - gradients are averaged by allreduce in buckets of about 25 MB (the first 1 MB), laid out in the order the
///   backward pass finishes them (observed in the first step), each bucket started as soon as its last gradient is
///   final, on the MPI thread, while the backward pass goes on; the buckets start in the same order on every rank;
/// - buffers that are not trained (batch norm's running statistics) are rank 0's, broadcast before each update
///   (DDP's `broadcast_buffers`); batch norm itself normalises each rank's share with its own statistics (DDP
///   without `SyncBatchNorm`);
/// - clipping, the optimiser, EMA, HPM's teacher and CLIP's temperature then act on identical averaged gradients, so
///   the replicas stay identical: a digest of the parameters is compared across ranks at every epoch's end, and a
///   mismatch stops the run.
public final class DataParallel {
    public let communicator: Communicator
    public var rank: Int { communicator.rank }
    public var ranks: Int { communicator.size }
    /// Gradient bytes per allreduce bucket (DDP's `bucket_cap_mb`, 25 MB), and of the first bucket (DDP's 1 MB: the
    /// last layers' gradients, ready first, start travelling early even in a small model).
    public static let bucketBytes = 25 << 20
    public static let firstBucketBytes = 1 << 20

    /// Seconds the allreduces took on the MPI thread, and seconds the training thread waited for them after its
    /// backward pass: what the overlap did not hide.
    public private(set) var allreduceSeconds = 0.0
    public private(set) var waitedSeconds = 0.0
    public private(set) var reducedUpdates = 0
    public private(set) var gradientBytes = 0
    /// Set when every rank stopped on the same failure at the same step (bad data on one of them, a non-finite loss,
    /// replicas that diverged): the job can end normally, each rank with its message.
    public internal(set) var failedTogether = false

    public init(_ communicator: Communicator) { self.communicator = communicator }

    /// Rank 0's values of `tensors` into every rank's, in place (any dtype; the same shapes on every rank).
    func broadcast(_ tensors: [Tensor]) throws {
        for tensor in tensors where tensor.count > 0 {
            try communicator.broadcast(tensor.raw, count: tensor.count * tensor.dtype.byteSize)
        }
    }

    /// A 64-bit digest of the values of `tensors`, in order.
    static func digest(_ tensors: [Tensor]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for tensor in tensors {
            let bytes = tensor.count * tensor.dtype.byteSize
            let words = UnsafeRawPointer(tensor.raw).bindMemory(to: UInt32.self, capacity: bytes / 4)
            for i in 0..<(bytes / 4) { hash = (hash ^ UInt64(words[i])) &* 0x0000_0100_0000_01B3 }
            hash = (hash ^ UInt64(bytes)) &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// Stops the run when the ranks' `tensors` differ (the replicas diverged).
    func checkReplicas(_ tensors: [Tensor], epoch: Int) throws {
        let digests = try communicator.gather(Self.digest(tensors))
        guard Set(digests).count == 1 else {
            failedTogether = true
            let differing = digests.indices.filter { digests[$0] != digests[0] }.map(String.init)
            throw TrainingError.replicasDiverged(epoch: epoch, ranks: differing)
        }
    }

    /// This rank's share of each batch.
    var share: DataShare { DataShare(rank: rank, ranks: ranks) }

    /// The ranks' evaluations of their shares, added up: the evaluation of the whole set, the same on every rank.
    func combine(_ part: Evaluation) throws -> Evaluation {
        let heads = [part.classHeadTop1Correct, part.distillationHeadTop1Correct]
        let values =
            [Double(part.count), Double(part.top1Correct), Double(part.top5Correct), part.lossSum]
            + heads.map { Double($0 ?? 0) } + part.confusion.joined().map(Double.init)
        let summed = try communicator.sum(values)
        var whole = part
        (whole.count, whole.top1Correct, whole.top5Correct, whole.lossSum) = (Int(summed[0]), Int(summed[1]), Int(summed[2]), summed[3])
        whole.classHeadTop1Correct = heads[0].map { _ in Int(summed[4]) }
        whole.distillationHeadTop1Correct = heads[1].map { _ in Int(summed[5]) }
        let classes = part.confusion.count
        whole.confusion = (0..<classes).map { r in (0..<classes).map { c in Int(summed[6 + r * classes + c]) } }
        return whole
    }

    /// Gradient averaging for one model's parameters: start a pass with `begin`, hand each leaf to `ready` as its
    /// gradient becomes final, and `finish` after the backward pass.
    func gradientBuckets(for parameters: [Tensor]) -> GradientBuckets { GradientBuckets(self, parameters: parameters) }

    fileprivate func account(allreduce: Double, waited: Double, bytes: Int) {
        allreduceSeconds += allreduce
        waitedSeconds += waited
        gradientBytes = bytes
        reducedUpdates += 1
    }

    /// One line for the log: the time in allreduce and how much of it the overlap hid.
    public var summary: String {
        let hidden = allreduceSeconds > 0 ? max(0, 1 - waitedSeconds / allreduceSeconds) * 100 : 0
        return String(
            format:
                "data parallel: %d ranks, %.1f MB of gradients per update; allreduce %.3f s per update, %.3f s of it waited for (%.0f%% hidden behind the backward pass)",
            ranks, Double(gradientBytes) / 1e6, allreduceSeconds / Double(max(reducedUpdates, 1)),
            waitedSeconds / Double(max(reducedUpdates, 1)), hidden)
    }
}

/// The buckets of one model's gradients (see `DataParallel`).
///
/// The first pass buckets the parameters in reverse order of the optimiser's list; from what that pass observes, the
/// buckets are then rebuilt in the order the gradients actually became final (rank 0's order, broadcast, so every rank
/// has the same buckets), as DDP rebuilds its buckets after the first iteration. A bucket starts once all its
/// gradients are final and every bucket before it has started.
final class GradientBuckets {
    private let parallel: DataParallel
    /// Trainable parameters, in the optimiser's order.
    private let parameters: [Tensor]
    private let index: [ObjectIdentifier: Int]
    /// Each bucket's parameters (positions in `parameters`), each parameter's bucket and offset within it.
    private var buckets: [[Int]] = []
    private var bucketOf: [Int] = []
    private var offset: [Int] = []
    private var buffers: [UnsafeMutablePointer<Float>] = []
    private var waiting: [Int] = []
    private var started: [Communicator.Pending?] = []
    private var grads: [Tensor?] = []
    private var nextToStart = 0
    /// The order gradients became final in, recorded in the first pass only.
    private var observed: [Int]? = []

    init(_ parallel: DataParallel, parameters: [Tensor]) {
        self.parallel = parallel
        self.parameters = parameters.filter(\.requiresGrad)
        index = Dictionary(self.parameters.enumerated().map { (ObjectIdentifier($0.element), $0.offset) }, uniquingKeysWith: { a, _ in a })
        layOut(Array(self.parameters.indices.reversed()))
    }

    deinit { for buffer in buffers { buffer.deallocate() } }

    /// Fills buckets with the parameters in `order`: the first up to 1 MB, the others up to 25 MB.
    private func layOut(_ order: [Int]) {
        for buffer in buffers { buffer.deallocate() }
        buckets = [[]]
        bucketOf = Array(repeating: 0, count: parameters.count)
        offset = Array(repeating: 0, count: parameters.count)
        var filled = 0
        for i in order {
            let cap = buckets.count == 1 ? DataParallel.firstBucketBytes : DataParallel.bucketBytes
            if filled > 0 && (filled + parameters[i].count) * 4 > cap {
                buckets.append([])
                filled = 0
            }
            buckets[buckets.count - 1].append(i)
            bucketOf[i] = buckets.count - 1
            offset[i] = filled
            filled += parameters[i].count
        }
        buffers = buckets.indices.map { UnsafeMutablePointer<Float>.allocate(capacity: max(size(of: $0), 1)) }
    }

    private func size(of bucket: Int) -> Int { buckets[bucket].last.map { offset[$0] + parameters[$0].count } ?? 0 }

    /// Before a backward pass whose gradients are to be averaged.
    func begin() {
        waiting = buckets.map(\.count)
        started = Array(repeating: nil, count: buckets.count)
        grads = Array(repeating: nil, count: parameters.count)
        nextToStart = 0
    }

    /// A leaf's gradient is final: when that completes buckets, start them in order.
    func ready(_ leaf: Tensor) {
        guard let i = index[ObjectIdentifier(leaf)], grads[i] == nil, let grad = leaf.grad else { return }
        grads[i] = grad
        observed?.append(i)
        waiting[bucketOf[i]] -= 1
        while nextToStart < buckets.count && waiting[nextToStart] == 0 { start(nextToStart) }
    }

    private func start(_ bucket: Int) {
        nextToStart = bucket + 1
        let buffer = UncheckedSendable(buffers[bucket])
        // The gradients as they are now (each is final and never changed in place); missing ones count as zeros.
        let members = buckets[bucket].map { (grads[$0], offset[$0], parameters[$0].count) }
        let inputs = UncheckedSendable(members)
        started[bucket] = parallel.communicator.submitSum(buffer.value, count: size(of: bucket)) {
            for (grad, offset, count) in inputs.value {
                let target = buffer.value + offset
                if let grad {
                    let source = grad.dtype == .float32 ? grad : grad.converted(to: .float32)
                    target.update(from: source.pointer, count: count)
                } else {
                    target.initialize(repeating: 0, count: count)
                }
            }
        }
    }

    /// After the backward pass: starts the buckets not yet started (parameters that got no gradient), waits for them
    /// all, and gives each parameter that had a gradient the average over the ranks. After the first pass, rebuilds
    /// the buckets in the order observed.
    func finish() throws {
        for bucket in nextToStart..<buckets.count { start(bucket) }
        let waitStarted = Date()
        var reduceSeconds = 0.0
        for pending in started {
            try pending?.wait()
            reduceSeconds += pending?.seconds ?? 0
        }
        let waited = Date().timeIntervalSince(waitStarted)
        let scale = 1 / Float(parallel.ranks)
        for (i, p) in parameters.enumerated() where grads[i] != nil {
            let source = buffers[bucketOf[i]] + offset[i]
            let averaged = Tensor(uninitializedShape: p.shape)
            let target = averaged.pointer
            for k in 0..<p.count { target[k] = source[k] * scale }
            p.grad = averaged
        }
        grads = []
        parallel.account(allreduce: reduceSeconds, waited: waited, bytes: parameters.reduce(0) { $0 + $1.count * 4 })
        if let observed {
            self.observed = nil
            try rebuild(from: observed)
        }
    }

    /// Rank 0's observed order (then the parameters that got no gradient), on every rank, laid out as the buckets.
    private func rebuild(from observed: [Int]) throws {
        let seen = Set(observed)
        var order = (observed + parameters.indices.filter { !seen.contains($0) }).map { Int32($0) }
        try order.withUnsafeMutableBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            try parallel.communicator.broadcast(base, count: bytes.count)
        }
        guard Set(order).count == parameters.count, order.allSatisfy({ parameters.indices.contains(Int($0)) }) else {
            throw TrainingError.badOptions("the ranks train different parameters: rank 0's gradient order does not fit this rank's model")
        }
        layOut(order.map(Int.init))
    }
}
