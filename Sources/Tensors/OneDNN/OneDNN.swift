import CDNNL
import Foundation

/// The process-wide oneDNN CPU engine and stream, plus the helpers every kernel uses to describe memory,
/// build primitives and run them. All oneDNN calls of SwiftViT go through this file and `PrimitiveCache.swift`.
///
/// oneDNN (Debian's build) parallelises each primitive with OpenMP over all cores. SwiftViT runs one primitive at a
/// time (a lock serialises callers on different threads, which would otherwise oversubscribe the cores), and its own
/// Swift loops run between primitives, so the two never compete for the cores.
public enum OneDNN {
    /// The CPU engine. Created on first use.
    nonisolated(unsafe) static let engine: dnnl_engine_t = {
        var engine: dnnl_engine_t?
        check(dnnl_engine_create(&engine, dnnl_cpu, 0), "creating the CPU engine")
        return engine!
    }()

    nonisolated(unsafe) static let stream: dnnl_stream_t = {
        var stream: dnnl_stream_t?
        check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue), "creating the CPU stream")
        return stream!
    }()

    /// Time spent inside oneDNN primitive executions since the last `resetTimer()`, in seconds.
    /// Benchmarks read it to report the share of a step that oneDNN accounts for.
    nonisolated(unsafe) public private(set) static var secondsInPrimitives: Double = 0
    nonisolated(unsafe) public private(set) static var primitiveExecutions: Int = 0
    private static let executionLock = NSLock()

    public static func resetTimer() {
        secondsInPrimitives = 0
        primitiveExecutions = 0
    }

    /// The instruction set oneDNN dispatches to on this CPU (`dnnl_cpu_isa_t` bits).
    static let isa = dnnl_get_effective_cpu_isa().rawValue

    /// Whether oneDNN computes bfloat16 on this CPU: it needs AVX-512 (dot products native with AVX512-BF16 or
    /// AMX, emulated on plain AVX-512). Elsewhere the backend widens bf16 tensors to float32 for each kernel.
    public static let computesBFloat16 = isa & dnnl_cpu_isa_avx512_core.rawValue == dnnl_cpu_isa_avx512_core.rawValue

    /// Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), where bf16 is the faster precision.
    public static let hasNativeBFloat16 =
        isa & dnnl_cpu_isa_avx512_core_bf16.rawValue == dnnl_cpu_isa_avx512_core_bf16.rawValue

    /// oneDNN's version, e.g. "2.6.3".
    public static var version: String {
        guard let v = dnnl_version() else { return "unknown" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.patch)"
    }

    static func check(_ status: dnnl_status_t, _ what: @autoclosure () -> String) {
        if status != dnnl_success {
            fatalError("oneDNN failed (status \(status.rawValue)) while \(what())")
        }
    }

    /// A plain row-major memory descriptor of `dtype` with explicit strides (in elements).
    static func memoryDesc(_ dims: [Int], strides: [Int]? = nil, dtype: DType = .float32) -> dnnl_memory_desc_t {
        precondition(!dims.isEmpty && dims.count <= Int(DNNL_MAX_NDIMS), "oneDNN takes ranks 1...12, got \(dims)")
        let strides = strides ?? Shape.contiguousStrides(dims)
        var md = dnnl_memory_desc_t()
        let d = dims.map { dnnl_dim_t($0) }, s = strides.map { dnnl_dim_t($0) }
        check(
            dnnl_memory_desc_init_by_strides(&md, Int32(dims.count), d, dtype.dnnl, s),
            "describing \(dtype) memory \(dims) with strides \(strides)")
        return md
    }

    /// A descriptor that lets the primitive choose the layout (`dnnl_format_tag_any`), for weights it will pack.
    static func anyLayoutDesc(_ dims: [Int], dtype: DType) -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        let d = dims.map { dnnl_dim_t($0) }
        check(dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), d, dtype.dnnl, dnnl_format_tag_any), "describing \(dims) in any layout")
        return md
    }

    /// The memory of an image tensor: [B, C, H, W] channels-first (nchw), or a channel-blocked [B, C/b, H, W, b]
    /// (oneDNN's nChw8c / nChw16c: channel c at block c / b, lane c % b), whose logical dims are [B, C, H, W].
    static func imageDesc(_ shape: [Int]) -> dnnl_memory_desc_t {
        guard shape.count == 5 else { return memoryDesc(shape) }
        let block = shape[4]
        let tag: dnnl_format_tag_t
        switch block {
        case 8: tag = dnnl_nChw8c
        case 16: tag = dnnl_nChw16c
        default: preconditionFailure("channel blocks of 8 or 16, got \(shape)")
        }
        var md = dnnl_memory_desc_t()
        let d = [shape[0], shape[1] * block, shape[2], shape[3]].map { dnnl_dim_t($0) }
        check(dnnl_memory_desc_init_by_tag(&md, 4, d, dnnl_f32, tag), "describing channel-blocked images \(shape)")
        return md
    }

    /// The channel block of a layout oneDNN chose for images (8 for nChw8c, 16 for nChw16c), or 1 for any other.
    static func channelBlock(of md: dnnl_memory_desc_t) -> Int {
        guard md.format_kind == dnnl_blocked else { return 1 }
        let blocking = md.format_desc.blocking
        guard blocking.inner_nblks == 1, blocking.inner_idxs.0 == 1, blocking.strides.1 > blocking.strides.2 else { return 1 }
        return Int(blocking.inner_blks.0)
    }

    /// Copies memory from one layout to another (`key` names the pair, for the primitive cache).
    static func reorder(
        _ key: String, from source: dnnl_memory_desc_t, _ sourcePointer: UnsafeMutableRawPointer,
        to destination: dnnl_memory_desc_t, _ destinationPointer: UnsafeMutableRawPointer
    ) {
        let primitive = PrimitiveCache.get("reorder " + key) {
            var pd: dnnl_primitive_desc_t?
            var s = source, d = destination
            check(dnnl_reorder_primitive_desc_create(&pd, &s, engine, &d, engine, nil), "creating reorder \(key)")
            return pd!
        }
        execute(primitive.primitive, [(Arg.src, source, sourcePointer), (Arg.dst, destination, destinationPointer)])
    }

    /// Runs a primitive on the given (argument, memory descriptor, pointer) triples and waits for it.
    static func execute(_ primitive: dnnl_primitive_t, _ args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)]) {
        var memories: [dnnl_memory_t?] = []
        memories.reserveCapacity(args.count)
        var execArgs: [dnnl_exec_arg_t] = []
        execArgs.reserveCapacity(args.count)
        for (arg, desc, pointer) in args {
            var desc = desc
            var memory: dnnl_memory_t?
            check(dnnl_memory_create(&memory, &desc, engine, pointer), "wrapping a buffer as oneDNN memory")
            memories.append(memory)
            execArgs.append(dnnl_exec_arg_t(arg: arg, memory: memory))
        }
        // A primitive made with a scratchpad of its own (`descriptorWithOwnScratchpad`) gets one for this execution.
        var pd: const_dnnl_primitive_desc_t?
        check(dnnl_primitive_get_primitive_desc(primitive, &pd), "reading a primitive's descriptor")
        var scratchpad: UnsafeMutableRawPointer?
        if let md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), dnnl_memory_desc_get_size(md) > 0 {
            scratchpad = UnsafeMutableRawPointer.allocate(byteCount: dnnl_memory_desc_get_size(md), alignment: 64)
            var memory: dnnl_memory_t?
            check(dnnl_memory_create(&memory, md, engine, scratchpad), "wrapping a scratchpad as oneDNN memory")
            memories.append(memory)
            execArgs.append(dnnl_exec_arg_t(arg: Int32(DNNL_ARG_SCRATCHPAD), memory: memory))
        }
        defer { scratchpad?.deallocate() }
        timed {
            check(dnnl_primitive_execute(primitive, stream, Int32(execArgs.count), execArgs), "executing a primitive")
            check(dnnl_stream_wait(stream), "waiting for the stream")
        }
        for memory in memories { dnnl_memory_destroy(memory) }
    }

    /// Row-major C[M, N] = op(A) · op(B) through oneDNN's BLAS-style `dnnl_sgemm`. For a transposed left operand
    /// (weight gradients, xᵀ·g with K = tokens) it runs 2-3x faster than the matmul primitive does.
    static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        timed {
            check(
                dnnl_sgemm(
                    transposeA ? 84 : 78, transposeB ? 84 : 78, dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k),
                    1, a, dnnl_dim_t(lda), b, dnnl_dim_t(ldb), 0, c, dnnl_dim_t(ldc)),
                "running sgemm \(m)x\(k)x\(n)")
        }
    }

    /// Runs one oneDNN computation under the execution lock, adding its duration to `secondsInPrimitives`.
    private static func timed(_ body: () -> Void) {
        executionLock.lock()
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        secondsInPrimitives += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        primitiveExecutions += 1
        executionLock.unlock()
    }
}

/// oneDNN argument indices, named once so kernels read like the oneDNN documentation.
enum Arg {
    static let src = Int32(DNNL_ARG_SRC_0)
    static let src1 = Int32(DNNL_ARG_SRC_1)
    static let dst = Int32(DNNL_ARG_DST_0)
    static let weights = Int32(DNNL_ARG_WEIGHTS_0)
    static let bias = Int32(DNNL_ARG_BIAS)
    static let mean = Int32(DNNL_ARG_MEAN)
    static let variance = Int32(DNNL_ARG_VARIANCE)
    static let scale = Int32(DNNL_ARG_SCALE)
    static let shift = Int32(DNNL_ARG_SHIFT)
    static let diffSrc = Int32(DNNL_ARG_DIFF_SRC_0)
    static let diffDst = Int32(DNNL_ARG_DIFF_DST_0)
    static let diffScale = Int32(DNNL_ARG_DIFF_SCALE)
    static let diffShift = Int32(DNNL_ARG_DIFF_SHIFT)
    static let diffWeights = Int32(DNNL_ARG_DIFF_WEIGHTS_0)
    static let diffBias = Int32(DNNL_ARG_DIFF_BIAS)
    static let workspace = Int32(DNNL_ARG_WORKSPACE)
    static func multipleSrc(_ i: Int) -> Int32 { Int32(DNNL_ARG_MULTIPLE_SRC) + Int32(i) }
    /// The second operand of binary post-op `i` (DNNL_ARG_ATTR_MULTIPLE_POST_OP(i) | DNNL_ARG_SRC_1: a macro C
    /// gives Swift no function for).
    static func postOp(_ i: Int) -> Int32 { Int32(DNNL_ARG_ATTR_MULTIPLE_POST_OP_BASE) * Int32(i + 1) | Int32(DNNL_ARG_SRC_1) }
}

extension DType {
    /// oneDNN's name for the type.
    var dnnl: dnnl_data_type_t {
        switch self {
        case .float32: return dnnl_f32
        case .bfloat16: return dnnl_bf16
        }
    }
}
