import Foundation

/// A block of tensor memory: 64-byte aligned (a cache line, and what oneDNN's AVX-512 kernels like), owned by this
/// object and freed with it. Tensors that are views (reshape, slices along the first axis) share one storage.
public final class Storage {
    public let device: Device
    public let dtype: DType
    /// Number of elements.
    public let count: Int
    let pointer: UnsafeMutableRawPointer

    init(count: Int, dtype: DType = .float32, device: Device = .cpu, zeroed: Bool = false) {
        precondition(count >= 0, "negative element count \(count)")
        self.device = device
        self.dtype = dtype
        self.count = count
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count * dtype.byteSize, 64)
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes for a tensor")
        }
        if zeroed { memset(raw, 0, bytes) }
        pointer = raw
    }

    deinit { free(pointer) }

    var floats: UnsafeMutablePointer<Float> { pointer.assumingMemoryBound(to: Float.self) }
}
