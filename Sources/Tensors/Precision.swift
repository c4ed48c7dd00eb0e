/// The precision a model computes in: the one type every layer takes (the `--precision` flag, a recipe, a run's
/// records, the inference classifier), decided once per command by `Precision.decide`.
///
/// For inference, bf16 means the weight matrices converted to bfloat16 once (`convertWeights(to:)`); for training it
/// means mixed precision (`Autocast`: bf16 matrix products, float32 weights, gradients and optimiser state). int8 is
/// for inference only: the linear layers' weights rounded to int8 once, activations quantised per product
/// (`QuantizedWeight`), everything else in float32.
public enum Precision: String, Codable, CaseIterable, Sendable, CustomStringConvertible {
    case bf16, fp32, int8

    /// The dtype the model's tensors hold (int8: float32, the int8 products being inside the linear layers).
    public var dtype: DType { self == .bf16 ? .bfloat16 : .float32 }

    /// Whether the linear layers run int8 products (`Module.quantizeLinearWeights()`).
    public var quantizesLinearLayers: Bool { self == .int8 }

    /// What int8 products give, and so what runs between them (attention's products and softmax) computes in: bf16
    /// where the CPU multiplies it natively (OpenVINO runs what it leaves unquantised so too), else float32.
    public static var int8OutputDType: DType { cpuHasBFloat16 ? .bfloat16 : .float32 }

    /// The precision of a recipe's `autocast` (how runs save it: nil is float32).
    public init(autocast: DType?) { self = autocast == .bfloat16 ? .bf16 : .fp32 }

    /// As a recipe saves it: nil for float32.
    public var autocast: DType? { self == .bf16 ? .bfloat16 : nil }

    public var description: String { rawValue }

    /// Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated, and slower.
    public static var cpuHasBFloat16: Bool { OneDNN.hasNativeBFloat16 }

    /// What OpenVINO chooses too: bf16 where the CPU multiplies it natively, else fp32.
    public static var automatic: Precision { cpuHasBFloat16 ? .bf16 : .fp32 }

    /// The precision to use, from the flag (`asked`) and the CPU, with why in words for the log. `default` is what
    /// no flag means: `automatic` for inference; training defaults to fp32 (as `vit train`).
    public static func decide(asked: Precision?, default fallback: Precision = automatic) -> (precision: Precision, why: String) {
        if let asked { return (asked, "as asked") }
        if fallback != automatic { return (fallback, "the default") }
        return (fallback, cpuHasBFloat16 ? "this CPU multiplies bf16 natively" : "this CPU has no AVX512-BF16 or AMX")
    }
}
