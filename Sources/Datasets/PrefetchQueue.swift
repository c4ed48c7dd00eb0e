import Foundation

/// Work prepared ahead of its consumer: a background thread calls `produce` and keeps up to `depth` results
/// waiting, handed out in order by `next()`. `produce` returning nil ends the sequence. Both the training loader
/// (augmented batches) and the inference batch loader (decoded files) are built on it.
public final class PrefetchQueue<Element>: @unchecked Sendable {
    private let produce: () -> Element?
    private let background: Bool
    private let depth: Int
    private let condition = NSCondition()
    private var ready: [Element] = []
    private var finished = false
    private var cancelled = false
    /// True once the producer thread has returned (at once without one).
    private var producerExited: Bool

    /// With `background` false nothing runs ahead: `next()` calls `produce` on the caller's thread.
    public init(name: String, depth: Int = 2, background: Bool = true, produce: @escaping () -> Element?) {
        self.produce = produce
        self.background = background
        self.depth = max(depth, 1)
        producerExited = !background
        guard background else { return }
        let thread = Thread { [self] in
            defer { changeState { producerExited = true } }
            while !isCancelled, let element = self.produce() {
                guard put(element) else { return }
            }
            finish()
        }
        thread.name = name
        thread.start()
    }

    deinit { cancel() }

    /// The next result in order, waiting for it if need be; nil at the end (or after `cancel`).
    public func next() -> Element? {
        guard background else { return isCancelled ? nil : produce() }
        condition.lock()
        defer { condition.unlock() }
        while ready.isEmpty && !finished && !cancelled { condition.wait() }
        guard !ready.isEmpty, !cancelled else { return nil }
        let element = ready.removeFirst()
        condition.broadcast()
        return element
    }

    /// Stops the producer after the element in progress (when the consumer leaves early).
    public func cancel() { changeState { cancelled = true } }

    /// Cancels and waits until the producer thread has returned, so that nothing runs behind the caller's back (a
    /// process that exits with the producer still working can free what it is using). Never call it from `produce`.
    public func cancelAndWait() {
        cancel()
        condition.lock()
        while !producerExited { condition.wait() }
        condition.unlock()
    }

    private var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    /// Waits for room; false when cancelled meanwhile.
    private func put(_ element: Element) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while ready.count >= depth && !cancelled { condition.wait() }
        guard !cancelled else { return false }
        ready.append(element)
        condition.broadcast()
        return true
    }

    private func finish() { changeState { finished = true } }

    /// Changes the shared state under the lock and wakes every waiter.
    private func changeState(_ change: () -> Void) {
        condition.lock()
        change()
        condition.broadcast()
        condition.unlock()
    }
}
