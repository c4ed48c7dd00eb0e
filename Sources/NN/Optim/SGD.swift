import Tensors

/// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay, as `torch.optim.SGD`
/// (dampening 0): g += wd·p; buf = momentum·buf + g (buf = g on the first step); g = g + momentum·buf (Nesterov)
/// or buf; p -= lr·g.
public final class SGD: Optimizer {
    public let groups: [ParameterGroup]
    public var learningRate: Float
    public let momentum: Float
    public let nesterov: Bool
    private var buffers: [Tensor]
    private var steps = 0

    public init(_ groups: [ParameterGroup], learningRate: Float, momentum: Float = 0, nesterov: Bool = false) {
        precondition(!nesterov || momentum > 0, "Nesterov momentum needs momentum > 0")
        self.groups = groups
        self.learningRate = learningRate
        self.momentum = momentum
        self.nesterov = nesterov
        buffers = groups.flatMap(\.parameters).map { Tensor.zeros($0.shape) }
    }

    public convenience init(
        _ parameters: [Tensor], learningRate: Float, momentum: Float = 0, nesterov: Bool = false,
        weightDecay: Float = 0
    ) {
        self.init(
            [ParameterGroup(parameters: parameters, weightDecay: weightDecay)], learningRate: learningRate,
            momentum: momentum, nesterov: nesterov)
    }

    public func step() {
        let first = steps == 0
        steps += 1
        var index = 0
        for group in groups {
            for p in group.parameters {
                defer { index += 1 }
                guard let grad = p.grad else { continue }
                let update = SGDUpdate(
                    learningRate: learningRate * group.learningRateScale, weightDecay: group.weightDecay, momentum: momentum,
                    nesterov: nesterov,
                    firstStep: first)
                p.device.backend.sgdUpdate(p, gradient: grad, momentumBuffer: buffers[index], update)
            }
        }
    }

    public func state() -> [String: Tensor] {
        var out = ["steps": Tensor(scalar: Float(steps))]
        for (i, b) in buffers.enumerated() { out["momentum_buffer.\(i)"] = b }
        return out
    }

    public func load(state: [String: Tensor]) throws {
        try loadBuffers(buffers, prefix: "momentum_buffer", from: state)
        steps = Int(state["steps"]?.item() ?? 0)
    }
}
