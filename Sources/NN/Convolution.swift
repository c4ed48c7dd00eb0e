import Foundation
import Tensors

/// Convolutional layers with PyTorch's and timm's parameter names: `Conv2d` (optionally weight-standardised, as BiT's
/// `StdConv2d`), `BatchNorm2d` (with running statistics), `GroupNorm`.

/// How a convolution standardises its weight before use (BiT, the hybrid ViT's ResNet): timm's `StdConv2d` divides by
/// sqrt(variance + eps); the JAX `StdConv` by (standard deviation + eps).
public struct WeightStandardization: Codable, Equatable, Sendable {
    public var eps: Float
    public var epsOnStandardDeviation: Bool
    public init(eps: Float, epsOnStandardDeviation: Bool = false) {
        self.eps = eps
        self.epsOnStandardDeviation = epsOnStandardDeviation
    }
}

/// y = conv2d(x, weight) + bias over [B, C, H, W].
public final class Conv2d: Module {
    public let weight: Tensor  // [Cout, Cin / groups, kH, kW]
    public let bias: Tensor?  // [Cout]
    public let stride: Int
    public let padding: SpatialPadding
    public let dilation: Int
    public let groups: Int
    public let standardization: WeightStandardization?

    /// Kaiming-normal weights for a ReLU after the layer, fan-out mode (timm's ResNet initialisation), zero bias.
    public init(
        _ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: SpatialPadding? = nil, dilation: Int = 1,
        groups: Int = 1, bias: Bool = false, standardization: WeightStandardization? = nil
    ) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0, "\(inChannels) -> \(outChannels) channels in \(groups) groups")
        let fanOut = outChannels * kernel * kernel / groups
        weight = Init.normal([outChannels, inChannels / groups, kernel, kernel], std: (2 / Float(fanOut)).squareRoot())
        self.bias = bias ? Init.zeros([outChannels]) : nil
        self.stride = stride
        // PyTorch's usual choice: (k - 1) / 2 · dilation on every side.
        self.padding = padding ?? .symmetric((kernel - 1) / 2 * dilation)
        self.dilation = dilation
        self.groups = groups
        self.standardization = standardization
        super.init()
        for p in parameters() { p.requiresGrad = true }
    }

    public var outChannels: Int { weight.shape[0] }

    /// x [B, Cin, H, W] -> [B, Cout, H', W']
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let w = standardization.map { weight.standardized(eps: $0.eps, epsOnStandardDeviation: $0.epsOnStandardDeviation) } ?? weight
        return x.conv2d(weight: w, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}

/// Batch normalisation of [B, C, H, W] (`torch.nn.BatchNorm2d`): batch statistics in training, with the running mean
/// and variance moved toward them by `momentum`; the running statistics in evaluation. The running statistics are
/// saved with the parameters (as PyTorch's buffers are) but never trained.
public final class BatchNorm2d: Module {
    public let weight: Tensor  // [C]
    public let bias: Tensor  // [C]
    public let runningMean: Tensor  // [C], not trained
    public let runningVar: Tensor  // [C], not trained
    public let eps: Float
    public let momentum: Float

    public init(_ channels: Int, eps: Float = 1e-5, momentum: Float = 0.1) {
        weight = Init.ones([channels])
        bias = Init.zeros([channels])
        runningMean = Init.zeros([channels])
        runningVar = Init.ones([channels])
        self.eps = eps
        self.momentum = momentum
        super.init()
        weight.requiresGrad = true
        bias.requiresGrad = true
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.batchNorm(
            weight: weight, bias: bias, runningMean: runningMean, runningVariance: runningVar, training: training, momentum: momentum,
            eps: eps)
    }
}

/// Group normalisation (`torch.nn.GroupNorm`), optionally followed by ReLU (timm's `GroupNormAct`).
public final class GroupNorm: Module {
    public let weight: Tensor  // [C]
    public let bias: Tensor  // [C]
    public let groups: Int
    public let eps: Float
    public let relu: Bool

    public init(groups: Int, channels: Int, eps: Float = 1e-5, relu: Bool = false) {
        precondition(channels % groups == 0, "\(channels) channels in \(groups) groups")
        weight = Init.ones([channels])
        bias = Init.zeros([channels])
        self.groups = groups
        self.eps = eps
        self.relu = relu
        super.init()
        weight.requiresGrad = true
        bias.requiresGrad = true
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = x.groupNorm(groups: groups, weight: weight, bias: bias, eps: eps)
        return relu ? y.relu() : y
    }
}
