/// Softmax, log-softmax and layer normalisation, each over the last axis.

extension Tensor {
    /// Softmax over the last axis.
    public func softmax() -> Tensor {
        let out = backend.softmax(self, log: false)
        return record(out, inputs: [self], "softmax") { g in
            [g.backend.softmaxBackward(gradOutput: g, output: out, log: false)]
        }
    }

    /// Log-softmax over the last axis (numerically stable; use it for cross-entropy).
    public func logSoftmax() -> Tensor {
        let out = backend.softmax(self, log: true)
        return record(out, inputs: [self], "logSoftmax") { g in
            [g.backend.softmaxBackward(gradOutput: g, output: out, log: true)]
        }
    }

    /// (x - mean) / sqrt(var + eps) * weight + bias over the last axis, with the biased variance (as PyTorch).
    /// `weight` and `bias` have the size of the last axis.
    public func layerNorm(weight: Tensor?, bias: Tensor?, eps: Float = 1e-6) -> Tensor {
        let columns = shape.last ?? 0
        precondition(columns > 0, "layerNorm needs a non-empty last axis, shape is \(shape)")
        precondition(
            weight.map { $0.count == columns } ?? true && bias.map { $0.count == columns } ?? true,
            "layerNorm parameters must have \(columns) values")
        let x = self
        let (out, mean, variance) = backend.layerNorm(x, weight: weight, bias: bias, eps: eps)
        let inputs = [x] + [weight, bias].compactMap { $0 }
        return record(out, inputs: inputs, "layerNorm") { g in
            let grads = g.backend.layerNormBackward(
                gradOutput: g, input: x, mean: mean, variance: variance,
                weight: weight, bias: bias, eps: eps)
            var result: [Tensor?] = [grads.input]
            if weight != nil { result.append(grads.weight) }
            if bias != nil { result.append(grads.bias) }
            return result
        }
    }
}
