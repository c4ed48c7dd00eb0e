import Foundation
import Tensors

/// Triton's dynamic batching for one model: requests queue, and a batch goes to the model as soon as it holds
/// `maxBatchSize` requests or its oldest request has waited `maxQueueDelay` (0: no waiting, a batch of whatever is
/// queued when the model is free). One thread runs the model, so the model is never run twice at once; decoding and
/// preprocessing happen on the requests' own threads, before they queue.
public final class DynamicBatcher: @unchecked Sendable {
    public struct Settings: Sendable {
        public var maxBatchSize = 8
        /// Seconds (the command line takes microseconds, as Triton's `max_queue_delay_microseconds`).
        public var maxQueueDelay = 0.0
        /// Requests queued beyond this are refused at once (503).
        public var maxQueue = 256
        /// A request still queued after this many seconds is answered 504.
        public var timeout = 30.0
        public init() {}
    }

    public enum Refusal: Error, Equatable {
        case queueFull
        case timedOut
    }

    /// One image's answer: its logits [classes] (none for a model without a head, such as CLIP's image tower) and its
    /// embedding [F] (a classifier's pooled features, CLIP's projected image embedding).
    public struct Answer: Sendable {
        public var logits: [Float]
        public var embedding: [Float]
        /// The dtype the embedding was computed in (its values are exact in float32): bf16 for CLIP's image tower
        /// under bf16, which zero-shot classification goes on from in bf16.
        public var embeddingType = DType.float32
    }

    private struct Request {
        let image: Tensor  // [3, S, S]
        let enqueued: Date
        let answer: @Sendable (Result<Answer, Error>) -> Void
    }

    public let settings: Settings
    private let run: (Tensor) -> (logits: Tensor?, features: Tensor)
    private let condition = NSCondition()
    /// Held while the model runs: a batch, or other work on the same weights (`exclusively`).
    private let modelLock = NSLock()
    private var queue: [Request] = []
    private var stopping = false
    private var thread: Thread?
    /// Told of each batch's size and of the queue's depth as it changes (on the batcher's thread or a request's).
    var onBatch: @Sendable (Int) -> Void = { _ in }
    var onDepth: @Sendable (Int) -> Void = { _ in }

    /// `run` maps a batch [B, 3, S, S] to logits [B, classes] (or nil) and features [B, F].
    public init(settings: Settings, run: @escaping (Tensor) -> (logits: Tensor?, features: Tensor)) {
        self.settings = settings
        self.run = run
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "SwiftViT batcher"
        thread.start()
        self.thread = thread
    }

    /// The queued requests now.
    public var depth: Int { condition.withLock { queue.count } }

    /// The answer for one preprocessed image [3, S, S], computed in whatever batch it joins.
    public func submit(_ image: Tensor) async throws -> Answer {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Answer, Error>) in
            condition.lock()
            defer { condition.unlock() }
            guard !stopping, queue.count < settings.maxQueue else {
                continuation.resume(throwing: Refusal.queueFull)
                return
            }
            queue.append(Request(image: image, enqueued: Date()) { continuation.resume(with: $0) })
            onDepth(queue.count)
            condition.signal()
        }
    }

    /// Runs `work` on a thread of its own while no batch runs (such as CLIP's text tower, which shares the model and
    /// its scratch memory with the image batches).
    public func exclusively<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { [modelLock] in
                modelLock.lock()
                let result = work()
                modelLock.unlock()
                continuation.resume(returning: result)
            }
        }
    }

    /// Finishes what is queued, then the thread ends.
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty {
                condition.unlock()
                return
            }
            // Wait for a full batch until the oldest request has waited maxQueueDelay.
            if settings.maxQueueDelay > 0 {
                let deadline = queue[0].enqueued.addingTimeInterval(settings.maxQueueDelay)
                while queue.count < settings.maxBatchSize && !stopping && Date() < deadline { _ = condition.wait(until: deadline) }
            }
            let taken = Array(queue.prefix(settings.maxBatchSize))
            queue.removeFirst(taken.count)
            onDepth(queue.count)
            condition.unlock()

            let now = Date()
            let (late, batch) = (
                taken.filter { now.timeIntervalSince($0.enqueued) > settings.timeout },
                taken.filter {
                    now.timeIntervalSince($0.enqueued) <= settings.timeout
                }
            )
            for request in late { request.answer(.failure(Refusal.timedOut)) }
            guard !batch.isEmpty else { continue }
            modelLock.lock()
            let (logits, features) = run(Tensor.stack(batch.map(\.image)))
            modelLock.unlock()
            let (classes, width) = (logits?.shape[1] ?? 0, features.shape[1])
            let (values, embeddings) = (logits?.toArray() ?? [], features.toArray())
            onBatch(batch.count)
            for (row, request) in batch.enumerated() {
                request.answer(
                    .success(
                        Answer(
                            logits: Array(values[(row * classes)..<((row + 1) * classes)]),
                            embedding: Array(embeddings[(row * width)..<((row + 1) * width)]), embeddingType: features.dtype)))
            }
        }
    }
}
