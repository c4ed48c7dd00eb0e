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

extension Module {
    /// `--precision int8`: every `Linear` below this module gets an int8 copy of its weight (`QuantizedWeight`:
    /// per output channel, symmetric), so its products run in int8 with activations quantised per call, giving
    /// `outputDType` (`Precision.int8OutputDType` is what the commands pass). Weights used otherwise (embedding
    /// tables, convolution kernels, a projection read by `matmul`) stay float32. Returns how many layers were
    /// quantised. For inference only: the weights are frozen.
    @discardableResult
    public func quantizeLinearWeights(outputDType: DType = Precision.int8OutputDType) -> Int {
        var count = 0
        for case let linear as Linear in modules() where linear.weight.dtype == .float32 {
            linear.weight.freezeForInference()
            if linear.weight.quantizeForInference(outputDType: outputDType) { count += 1 }
        }
        return count
    }
}
