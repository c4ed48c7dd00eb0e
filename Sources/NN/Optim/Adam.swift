import Foundation
import Tensors

/// Adam and AdamW, as `torch.optim.Adam` / `torch.optim.AdamW`:
/// m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;  p -= lr/(1-β1ᵗ) · m / (sqrt(v)/sqrt(1-β2ᵗ) + eps).
/// Weight decay is L2 (added to g) for Adam, and decoupled (p *= 1 - lr·wd before the update) for AdamW.
public class Adam: Optimizer {
    public let groups: [ParameterGroup]
    public var learningRate: Float
    public let beta1: Float, beta2: Float, eps: Float
    /// AdamW's decoupled weight decay instead of Adam's L2 term.
    public let decoupledWeightDecay: Bool
    private var firstMoments: [Tensor]
    private var secondMoments: [Tensor]
    public private(set) var steps = 0

    public init(
        _ groups: [ParameterGroup], learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
        eps: Float = 1e-8, decoupledWeightDecay: Bool = false
    ) {
        self.groups = groups
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.decoupledWeightDecay = decoupledWeightDecay
        let parameters = groups.flatMap(\.parameters)
        firstMoments = parameters.map { Tensor.zeros($0.shape) }
        secondMoments = parameters.map { Tensor.zeros($0.shape) }
    }

    public convenience init(
        _ parameters: [Tensor], learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
        eps: Float = 1e-8, weightDecay: Float = 0
    ) {
        self.init(
            [ParameterGroup(parameters: parameters, weightDecay: weightDecay)], learningRate: learningRate,
            beta1: beta1, beta2: beta2, eps: eps)
    }

    public func step() {
        steps += 1
        let correction1 = 1 - Foundation.pow(Double(beta1), Double(steps))
        let correction2 = 1 - Foundation.pow(Double(beta2), Double(steps))
        let correction2Root = Float(correction2.squareRoot())
        var index = 0
        for group in groups {
            let learningRate = self.learningRate * group.learningRateScale
            let stepSize = Float(Double(learningRate) / correction1)
            for p in group.parameters {
                defer { index += 1 }
                guard let grad = p.grad else { continue }
                let update = AdamUpdate(
                    beta1: beta1, beta2: beta2, eps: eps, stepSize: stepSize, correction2Root: correction2Root,
                    decay: decoupledWeightDecay ? 1 - learningRate * group.weightDecay : 1,
                    l2: decoupledWeightDecay ? 0 : group.weightDecay)
                p.device.backend.adamUpdate(
                    p, gradient: grad, firstMoment: firstMoments[index], secondMoment: secondMoments[index], update)
            }
        }
    }

    public func state() -> [String: Tensor] {
        var out = ["steps": Tensor(scalar: Float(steps))]
        for (i, m) in firstMoments.enumerated() { out["exp_avg.\(i)"] = m }
        for (i, v) in secondMoments.enumerated() { out["exp_avg_sq.\(i)"] = v }
        return out
    }

    public func load(state: [String: Tensor]) throws {
        try loadBuffers(firstMoments, prefix: "exp_avg", from: state)
        try loadBuffers(secondMoments, prefix: "exp_avg_sq", from: state)
        steps = Int(state["steps"]?.item() ?? 0)
    }
}

/// Adam with decoupled weight decay (Loshchilov & Hutter), timm's default for ViTs.
public final class AdamW: Adam {
    public init(
        _ groups: [ParameterGroup], learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
        eps: Float = 1e-8
    ) {
        super.init(groups, learningRate: learningRate, beta1: beta1, beta2: beta2, eps: eps, decoupledWeightDecay: true)
    }

    public convenience init(
        _ parameters: [Tensor], learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
        eps: Float = 1e-8, weightDecay: Float = 0.01
    ) {
        self.init(
            [ParameterGroup(parameters: parameters, weightDecay: weightDecay)], learningRate: learningRate,
            beta1: beta1, beta2: beta2, eps: eps)
    }
}
