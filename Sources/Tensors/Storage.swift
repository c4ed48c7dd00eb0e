import Foundation

/// A block of tensor memory: 64-byte aligned (a cache line, and what oneDNN's AVX-512 kernels like), owned by this
/// object and freed with it. Tensors that are views (reshape, slices along the first axis) share one storage.
public final class Storage {
    public let device: Device
    public let dtype: DType
    /// Number of elements.
    public let count: Int
    /// The values, or nil while they are evicted (`evict(restore:)`).
    private var resident: UnsafeMutableRawPointer?
    /// Writes the evicted values back into fresh memory; set only while evicted.
    private var restore: ((UnsafeMutableRawPointer) -> Void)?
    private let bytes: Int

    init(count: Int, dtype: DType = .float32, device: Device = .cpu, zeroed: Bool = false) {
        precondition(count >= 0, "negative element count \(count)")
        self.device = device
        self.dtype = dtype
        self.count = count
        bytes = StoragePool.roundedSize(count * dtype.byteSize)
        let pointer = StoragePool.allocate(bytes)
        if zeroed { memset(pointer, 0, bytes) }
        resident = pointer
    }

    deinit {
        if let resident { StoragePool.release(resident, bytes: bytes) }
    }

    /// The values (brought back first if they were evicted).
    var pointer: UnsafeMutableRawPointer {
        if let resident { return resident }
        let pointer = StoragePool.allocate(bytes)
        restore!(pointer)
        resident = pointer
        restore = nil
        return pointer
    }

    /// Whether the values are in this storage's own memory now (false while evicted).
    public var isResident: Bool { resident != nil }

    /// Gives this storage's memory back to the system while another copy of the values exists (a frozen weight
    /// packed for its matmul, which is all inference reads): `restore` writes them back into fresh memory on the next
    /// access through `pointer`, so every reader still sees the same values. Not for concurrent use.
    func evict(restore: @escaping (UnsafeMutableRawPointer) -> Void) {
        guard let resident else { return }
        // Straight to the system, not the pool: the point is that the memory leaves the process.
        free(resident)
        self.resident = nil
        self.restore = restore
    }

    var floats: UnsafeMutablePointer<Float> { pointer.assumingMemoryBound(to: Float.self) }
}

/// Keeps freed blocks of 64 KiB and more for reuse. A training or inference loop allocates the same activation sizes
/// every step; without this each such block would be a fresh mmap whose pages fault in on first touch, which can
/// cost more than the op that writes it. Smaller blocks go straight to malloc, which recycles them itself.
public enum StoragePool {
    static let poolThreshold = 1 << 16
    /// Upper bound on the memory held for reuse (bytes); beyond it freed blocks go back to the system.
    nonisolated(unsafe) public static var limit = Int(ProcessInfo.processInfo.physicalMemory / 4)
    nonisolated(unsafe) private static var free: [Int: [UnsafeMutableRawPointer]] = [:]
    nonisolated(unsafe) public private(set) static var cachedBytes = 0
    private static let lock = NSLock()

    /// Pooled sizes round up (to 4 KiB, or 64 KiB past 1 MiB) so that nearly equal shapes share blocks.
    static func roundedSize(_ bytes: Int) -> Int {
        let b = max(bytes, 64)
        if b < poolThreshold { return b }
        return b < 1 << 20 ? (b + 4095) & ~4095 : (b + 65_535) & ~65_535
    }

    static func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes >= poolThreshold {
            let reused: UnsafeMutableRawPointer? = lock.withLock {
                guard let p = free[bytes]?.popLast() else { return nil }
                cachedBytes -= bytes
                return p
            }
            if let reused { return reused }
        }
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes for a tensor")
        }
        return raw
    }

    static func release(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        if bytes >= poolThreshold {
            let kept: Bool = lock.withLock {
                guard cachedBytes + bytes <= limit else { return false }
                free[bytes, default: []].append(pointer)
                cachedBytes += bytes
                return true
            }
            if kept { return }
        }
        Foundation.free(pointer)
    }

    /// Returns every cached block to the system.
    public static func trim() {
        lock.withLock {
            for (_, blocks) in free { for p in blocks { Foundation.free(p) } }
            free.removeAll()
            cachedBytes = 0
        }
    }
}
