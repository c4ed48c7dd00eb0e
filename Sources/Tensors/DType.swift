/// The element type of a tensor's storage. Every kernel reads its tensors' dtype: oneDNN descriptors are built from
/// it, and a kernel that cannot take a dtype says so. `bfloat16` is the upper half of a `float32` (8 exponent bits,
/// 7 mantissa bits): the format of AVX512-BF16 and AMX matmuls, which accumulate in `float32`.
public enum DType: String, Sendable, Codable, CustomStringConvertible, CaseIterable {
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

/// bfloat16 <-> float32 on the host, as oneDNN and PyTorch convert: round to nearest, ties to even; NaN stays NaN.
public enum BFloat16 {
    @inline(__always) public static func bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(bits >> 16) | 0x0040 }
        return UInt16((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }

    @inline(__always) public static func float(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    /// `value` rounded to the nearest bfloat16, as a float.
    @inline(__always) public static func rounded(_ value: Float) -> Float { float(bits(value)) }
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
