import Foundation

/// A block of tensor memory: 64-byte aligned (a cache line, and what oneDNN's AVX-512 kernels like), owned by this
/// object and freed with it. Tensors that are views (reshape, slices along the first axis) share one storage.
public final class Storage {
    public let device: Device
    public let dtype: DType
    /// Number of elements.
    public let count: Int
    let pointer: UnsafeMutableRawPointer
    private let bytes: Int

    init(count: Int, dtype: DType = .float32, device: Device = .cpu, zeroed: Bool = false) {
        precondition(count >= 0, "negative element count \(count)")
        self.device = device
        self.dtype = dtype
        self.count = count
        bytes = StoragePool.roundedSize(count * dtype.byteSize)
        pointer = StoragePool.allocate(bytes)
        if zeroed { memset(pointer, 0, bytes) }
    }

    deinit { StoragePool.release(pointer, bytes: bytes) }

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
