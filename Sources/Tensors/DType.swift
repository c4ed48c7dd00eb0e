/// The element type of a tensor's storage. Every op computes in `float32` today; `bfloat16` is the room left for
/// bf16 storage and AMX matmuls: kernels check the dtype, so adding it means adding kernels, not changing callers.
public enum DType: String, Sendable, CustomStringConvertible {
    case float32
    case bfloat16

    public var byteSize: Int {
        switch self {
        case .float32: return 4
        case .bfloat16: return 2
        }
    }

    public var description: String { rawValue }
}

/// Where a tensor's storage lives and which `Backend` computes on it. A CUDA backend would add a case here and a
/// `Backend` conformance; the ops and every caller above them stay as they are.
public enum Device: Sendable, Equatable, CustomStringConvertible {
    case cpu

    public var backend: Backend {
        switch self {
        case .cpu: return CPUBackend.shared
        }
    }

    public var description: String { "cpu" }
}
