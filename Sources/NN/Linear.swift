import Tensors

/// y = x · weightᵀ + bias, with weight [out, in] (PyTorch's layout, so checkpoints load as they are).
public final class Linear: Module {
    public let weight: Tensor  // [out, in]
    public let bias: Tensor?  // [out]

    /// Weights truncated-normal (std 0.02) and bias zero, as timm initialises ViT linears.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        weight = Init.truncatedNormal([outFeatures, inFeatures])
        self.bias = bias ? Init.zeros([outFeatures]) : nil
        super.init()
        for p in parameters() { p.requiresGrad = true }
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// x [..., in] -> [..., out]; `activation` is fused into the matmul at inference.
    public func callAsFunction(_ x: Tensor, activation: UnaryOp? = nil) -> Tensor {
        x.linear(weight: weight, bias: bias, activation: activation)
    }
}
