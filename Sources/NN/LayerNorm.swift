import Tensors

/// Layer normalisation over the last axis with a learned scale and shift. eps defaults to 1e-6, as timm and the
/// original ViT use (Hugging Face configs carry their own, often 1e-12).
public final class LayerNorm: Module {
    public let weight: Tensor  // [dim]
    public let bias: Tensor  // [dim]
    public let eps: Float

    public init(_ dim: Int, eps: Float = 1e-6) {
        weight = Init.ones([dim])
        bias = Init.zeros([dim])
        self.eps = eps
        super.init()
        weight.requiresGrad = true
        bias.requiresGrad = true
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.layerNorm(weight: weight, bias: bias, eps: eps)
    }
}
