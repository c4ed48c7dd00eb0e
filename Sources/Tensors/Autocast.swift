/// Mixed precision, as PyTorch's `torch.autocast`: inside `Autocast.run(.bfloat16) { ... }` every matrix product
/// (`linear`, `matmul`) casts its float32 operands to bfloat16 and returns bfloat16; every other op computes in the
/// dtype of its inputs, and an elementwise op on a float32 and a bfloat16 tensor gives float32. So with float32
/// parameters a ViT's matmuls, attention and MLP run in bf16 while the residual stream, LayerNorm and the loss stay
/// float32. The casts are recorded: each float32 parameter receives a float32 gradient (the optimiser's master
/// weights and state never leave float32), and every gradient has its tensor's dtype.
public enum Autocast {
    /// The dtype matrix products run in; nil outside `run`.
    @TaskLocal public static var dtype: DType?

    /// Runs `body` with matrix products in `dtype` (float32: no change).
    public static func run<T>(_ dtype: DType, _ body: () throws -> T) rethrows -> T {
        try $dtype.withValue(dtype == .float32 ? nil : dtype) { try body() }
    }

    /// The dtype an elementwise op on `a` and `b` gives: the wider (bf16 with fp32 is fp32), as PyTorch promotes.
    public static func promoted(_ a: DType, _ b: DType) -> DType {
        a == .float32 || b == .float32 ? .float32 : a
    }
}
