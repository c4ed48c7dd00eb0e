import CDNNL
import Foundation

/// A oneDNN primitive together with the descriptor it was made from (backward primitives need their forward
/// descriptor as a hint).
final class CachedPrimitive {
    let descriptor: dnnl_primitive_desc_t
    let primitive: dnnl_primitive_t

    /// The kernel oneDNN chose, as ONEDNN_VERBOSE names it ("jit:avx2", "gemm:jit", "ref:any", ...).
    let implementation: String

    init(descriptor: dnnl_primitive_desc_t) {
        var primitive: dnnl_primitive_t?
        OneDNN.check(dnnl_primitive_create(&primitive, descriptor), "creating a primitive")
        self.descriptor = descriptor
        self.primitive = primitive!
        var name: UnsafePointer<CChar>?
        let found = withUnsafeMutablePointer(to: &name) { dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, $0) }
        implementation = found == dnnl_success ? name.map { String(cString: $0) } ?? "" : ""
    }

    /// oneDNN's loop reference, many times slower than its jit kernels.
    var isReference: Bool { implementation.hasPrefix("ref") }

    deinit {
        dnnl_primitive_destroy(primitive)
        dnnl_primitive_desc_destroy(descriptor)
    }
}

/// Creating a oneDNN primitive costs far more than running a small one (JIT code generation), so each primitive is
/// made once per (operation, shapes, options) and kept. Keys are short strings written by the kernels.
enum PrimitiveCache {
    nonisolated(unsafe) private static var primitives: [String: CachedPrimitive] = [:]
    private static let lock = NSLock()

    static func get(_ key: String, make: () -> dnnl_primitive_desc_t) -> CachedPrimitive {
        lock.lock()
        defer { lock.unlock() }
        if let cached = primitives[key] { return cached }
        let made = CachedPrimitive(descriptor: make())
        primitives[key] = made
        return made
    }

    /// Each cached primitive's key and the kernel oneDNN chose for it, for the tests that keep hot ops off the
    /// reference kernels.
    static var implementations: [(key: String, implementation: String)] {
        lock.lock()
        defer { lock.unlock() }
        return primitives.map { ($0.key, $0.value.implementation) }
    }

    nonisolated(unsafe) private static var unimplemented: Set<String> = []

    /// The primitive for `key`, or nil when oneDNN has no implementation for it (remembered, so the caller's fallback
    /// is taken at once next time). `make` returns nil for "unimplemented" and stops on any other failure.
    static func getIfImplemented(_ key: String, make: () -> dnnl_primitive_desc_t?) -> CachedPrimitive? {
        lock.lock()
        defer { lock.unlock() }
        if let cached = primitives[key] { return cached }
        if unimplemented.contains(key) { return nil }
        guard let descriptor = make() else {
            unimplemented.insert(key)
            return nil
        }
        let made = CachedPrimitive(descriptor: descriptor)
        primitives[key] = made
        return made
    }

    /// `descriptor(...)`, but nil where oneDNN reports the operation unimplemented for these types and shapes.
    static func descriptorIfImplemented<D>(_ opDesc: inout D, _ what: String) -> dnnl_primitive_desc_t? {
        var pd: dnnl_primitive_desc_t?
        let status = withUnsafeMutablePointer(to: &opDesc) { p in
            dnnl_primitive_desc_create(&pd, UnsafeRawPointer(p), nil, OneDNN.engine, nil)
        }
        if status == dnnl_unimplemented { return nil }
        OneDNN.check(status, what)
        return pd
    }

    /// Makes a primitive descriptor from an operation descriptor (any `dnnl_*_desc_t`).
    static func descriptor<D>(
        _ opDesc: inout D, attributes: dnnl_primitive_attr_t? = nil,
        hint: dnnl_primitive_desc_t? = nil, _ what: String
    ) -> dnnl_primitive_desc_t {
        var pd: dnnl_primitive_desc_t?
        withUnsafeMutablePointer(to: &opDesc) { p in
            OneDNN.check(dnnl_primitive_desc_create(&pd, UnsafeRawPointer(p), attributes, OneDNN.engine, hint), what)
        }
        return pd!
    }

    /// `descriptor(...)` with a scratchpad of its own for every execution (`dnnl_scratchpad_mode_user`;
    /// `OneDNN.execute` allocates it). Debian's oneDNN shares one library scratchpad between primitives, which
    /// corrupts convolutions (im2col buffers) run from two threads at once; a per-execution scratchpad cannot be shared.
    static func descriptorWithOwnScratchpad<D>(_ opDesc: inout D, hint: dnnl_primitive_desc_t? = nil, _ what: String)
        -> dnnl_primitive_desc_t
    {
        var attributes: dnnl_primitive_attr_t?
        OneDNN.check(dnnl_primitive_attr_create(&attributes), "creating primitive attributes")
        defer { dnnl_primitive_attr_destroy(attributes) }
        OneDNN.check(dnnl_primitive_attr_set_scratchpad_mode(attributes, dnnl_scratchpad_mode_user), "choosing the scratchpad mode")
        return descriptor(&opDesc, attributes: attributes, hint: hint, what)
    }

    static var count: Int { lock.withLock { primitives.count } }
}

/// A weight copied into the layout a primitive chose for it (blocked for its kernels), with that layout's descriptor.
/// A frozen weight owns its copies (`Tensor.packedCopies`); a trained one is packed for each use, and a convolution's
/// weight gradient is written in the primitive's layout before it is reordered into the plain tensor.
final class PackedWeights {
    let pointer: UnsafeMutableRawPointer
    let desc: dnnl_memory_desc_t

    /// Uninitialised memory in the layout `desc`.
    init(_ desc: dnnl_memory_desc_t) {
        var desc = desc
        let bytes = max(Int(dnnl_memory_desc_get_size(&desc)), 64)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else { fatalError("out of memory packing \(bytes) bytes of weights") }
        pointer = raw
        self.desc = desc
    }

    /// Reorders `source` (described by `plain`) into `packed`; `key` names the pair for the primitive cache.
    convenience init(_ source: UnsafeMutableRawPointer, plain: dnnl_memory_desc_t, packed: dnnl_memory_desc_t, key: String) {
        self.init(packed)
        OneDNN.reorder("packing " + key, from: plain, source, to: packed, pointer)
    }

    deinit { free(pointer) }
}
