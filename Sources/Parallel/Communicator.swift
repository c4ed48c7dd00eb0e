import Foundation

/// The ranks of one MPI job (`MPI_COMM_WORLD`) and the collectives data-parallel training needs: allreduce, broadcast,
/// allgather.
///
/// Every MPI call runs on one thread of its own, the one that initialised MPI (`MPI_THREAD_FUNNELED`), in the order
/// the callers submit them; so a collective submitted while the backward pass goes on proceeds beside it (that is the
/// overlap). Collectives are non-blocking ones polled with short sleeps, so a rank waiting for a slower one (that
/// one saving a checkpoint, say) leaves its core to the work instead of spinning in MPI's progress loop.
///
/// A rank that dies makes Open MPI end the job (its default error handler, `MPI_ERRORS_ARE_FATAL`, and mpirun's
/// watch over its processes): nothing here waits forever on a dead peer.
public final class Communicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    private let mpi: OpenMPI
    private let thread: CallThread

    /// Joins the job that launched this process: nil when no MPI launcher started it (the single-process case, which
    /// never opens the library).
    public static func joinIfLaunched() throws -> Communicator? {
        guard try MPILaunch.detect().get() else { return nil }
        return try Communicator()
    }

    private init() throws {
        let mpi = try OpenMPI()
        let thread = CallThread()
        let (rank, size): (Int32, Int32) = try thread.sync {
            var provided: Int32 = 0
            guard mpi.initThread(nil, nil, OpenMPI.threadFunneled, &provided) == 0 else { throw MPIError("MPI_Init_thread failed") }
            guard provided >= OpenMPI.threadFunneled else {
                throw MPIError("this MPI library gives thread level \(provided); SwiftViT needs MPI_THREAD_FUNNELED (1)")
            }
            var rank: Int32 = 0, size: Int32 = 0
            _ = mpi.commRank(mpi.commWorld, &rank)
            _ = mpi.commSize(mpi.commWorld, &size)
            return (rank, size)
        }
        self.mpi = mpi
        self.thread = thread
        self.rank = Int(rank)
        self.size = Int(size)
    }

    public var isRoot: Bool { rank == 0 }

    // MARK: Collectives, waited for

    /// Sums `count` floats at `buffer` over the ranks, in place.
    public func sum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try submitSum(buffer, count: count).wait()
    }

    /// Each value summed over the ranks.
    public func sum(_ values: [Double]) throws -> [Double] {
        var values = values
        try values.withUnsafeMutableBufferPointer { p in
            let (base, count) = (UnsafeMutableRawPointer(p.baseAddress), p.count)
            try thread.sync { [self] in try reduce(base, count: count, type: mpi.double, op: mpi.sum) }
        }
        return values
    }

    /// Each flag's largest value over the ranks: "does any rank want ...".
    public func any(_ flags: [Bool]) throws -> [Bool] {
        var values = flags.map { Int32($0 ? 1 : 0) }
        try values.withUnsafeMutableBufferPointer { p in
            let (base, count) = (UnsafeMutableRawPointer(p.baseAddress), p.count)
            try thread.sync { [self] in try reduce(base, count: count, type: mpi.int32, op: mpi.max) }
        }
        return values.map { $0 != 0 }
    }

    /// Rank `root`'s `count` bytes at `buffer`, into every rank's `buffer`.
    public func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, root: Int = 0) throws {
        try thread.sync { [self] in
            var offset = 0
            while offset < count {
                let chunk = Swift.min(count - offset, Int(Int32.max))
                var request: OpenMPI.Request = nil
                guard mpi.ibcast(buffer + offset, Int32(chunk), mpi.byte, Int32(root), mpi.commWorld, &request) == 0 else {
                    throw MPIError("MPI_Ibcast failed")
                }
                try poll(&request)
                offset += chunk
            }
        }
    }

    /// Every rank's `value`, by rank.
    public func gather(_ value: UInt64) throws -> [UInt64] {
        let all = UnsafeMutablePointer<UInt64>.allocate(capacity: size)
        let mine = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        defer { all.deallocate(); mine.deallocate() }
        mine.pointee = value
        try thread.sync { [self] in
            var request: OpenMPI.Request = nil
            guard mpi.iallgather(mine, 8, mpi.byte, all, 8, mpi.byte, mpi.commWorld, &request) == 0 else {
                throw MPIError("MPI_Iallgather failed")
            }
            try poll(&request)
        }
        return Array(UnsafeBufferPointer(start: all, count: size))
    }

    /// Every rank's `values` (the same count on each), one after another in rank order.
    public func gather(_ values: [Float]) throws -> [Float] {
        let count = values.count
        let mine = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        let all = UnsafeMutablePointer<Float>.allocate(capacity: max(count * size, 1))
        defer { all.deallocate(); mine.deallocate() }
        mine.initialize(from: values, count: count)
        try thread.sync { [self] in
            var request: OpenMPI.Request = nil
            guard mpi.iallgather(mine, Int32(count), mpi.float, all, Int32(count), mpi.float, mpi.commWorld, &request) == 0 else {
                throw MPIError("MPI_Iallgather failed")
            }
            try poll(&request)
        }
        return Array(UnsafeBufferPointer(start: all, count: count * size))
    }

    // MARK: Collectives started now, waited for later

    /// A collective submitted to the MPI thread; `wait` blocks until it has finished and rethrows its failure.
    public final class Pending: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        fileprivate var failure: Error?
        /// Seconds the collective took on the MPI thread, from its start to its end.
        public fileprivate(set) var seconds: Double = 0

        fileprivate func finish() { done.signal() }

        public func wait() throws {
            done.wait()
            done.signal()  // a second wait returns at once
            if let failure { throw failure }
        }
    }

    /// Starts summing `count` floats at `buffer` over the ranks, in place; the caller keeps the buffer alive and
    /// untouched until `wait` returns. `before` runs on the MPI thread first (filling the buffer).
    public func submitSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, before: @escaping @Sendable () -> Void = {}) -> Pending {
        let pending = Pending()
        let address = UnsafeMutableRawPointer(buffer)
        thread.async {
            before()
            let started = Date()
            do { try self.reduce(address, count: count, type: self.mpi.float, op: self.mpi.sum) } catch { pending.failure = error }
            pending.seconds = Date().timeIntervalSince(started)
            pending.finish()
        }
        return pending
    }

    // MARK: Ending

    /// Leaves the job normally (every rank must): `MPI_Finalize`, then the MPI thread ends.
    public func finish() {
        _ = try? thread.sync { [self] in mpi.finalize() }
        thread.stop()
    }

    /// Ends every rank of the job at once with `code` (a failure one rank cannot share with the others in step).
    public func abortJob(code: Int32) -> Never {
        // From this thread: the MPI thread may be the one stuck.
        _ = mpi.abort(mpi.commWorld, code)
        exit(code)
    }

    // MARK: On the MPI thread

    /// In-place reduction of `count` elements of `type`, in chunks an `int` count can hold.
    private func reduce(_ buffer: UnsafeMutableRawPointer?, count: Int, type: OpenMPI.Handle, op: OpenMPI.Handle) throws {
        let elementSize = type == mpi.double ? 8 : 4
        var offset = 0
        while offset < count {
            let chunk = Swift.min(count - offset, 1 << 30)
            var request: OpenMPI.Request = nil
            let start = buffer.map { $0 + offset * elementSize }
            guard mpi.iallreduce(OpenMPI.inPlace, start, Int32(chunk), type, op, mpi.commWorld, &request) == 0 else {
                throw MPIError("MPI_Iallreduce failed")
            }
            try poll(&request)
            offset += chunk
        }
    }

    /// Drives `request` to completion: MPI_Test (which is what makes progress) with sleeps that grow from 20 µs to
    /// 1 ms while nothing happens.
    private func poll(_ request: inout OpenMPI.Request) throws {
        var done: Int32 = 0
        var pause: useconds_t = 20
        while true {
            guard mpi.test(&request, &done, nil) == 0 else { throw MPIError("MPI_Test failed") }
            if done != 0 { return }
            usleep(pause)
            pause = Swift.min(pause * 2, 1000)
        }
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    var value: Result<T, Error> = .failure(MPIError("the MPI thread did not run the call"))
}

/// One thread that runs submitted closures in order (MPI wants its calls from the thread that initialised it).
final class CallThread: @unchecked Sendable {
    private let condition = NSCondition()
    private var work: [() -> Void] = []
    private var stopping = false
    private var thread: Thread?

    init() {
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "SwiftViT MPI"
        thread.start()
        self.thread = thread
    }

    func async(_ body: @escaping () -> Void) {
        condition.lock()
        work.append(body)
        condition.signal()
        condition.unlock()
    }

    /// Runs `body` on the thread and waits for it (so it may use the caller's buffers).
    func sync<T>(_ body: @escaping () throws -> T) throws -> T {
        let result = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        async {
            result.value = Result { try body() }
            done.signal()
        }
        done.wait()
        return try result.value.get()
    }

    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while work.isEmpty && !stopping { condition.wait() }
            if work.isEmpty {
                condition.unlock()
                return
            }
            let next = work.removeFirst()
            condition.unlock()
            next()
        }
    }
}
