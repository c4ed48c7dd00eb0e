/// Reverse-mode automatic differentiation.
///
/// Every op that runs while recording, on inputs of which at least one requires grad, attaches a `GradNode` to its
/// output: the inputs and a closure mapping the output's gradient to the inputs' gradients. `backward()` walks the
/// recorded nodes from the loss back to the leaves, each once all its users have passed their gradients on, and adds
/// each leaf's gradient into `leaf.grad`. Gradients are never changed in place once made, so two inputs may safely
/// share one.

/// One recorded op.
final class GradNode {
    let name: String
    let inputs: [Tensor]
    /// Gradient of the output -> gradient of each input (nil where an input needs none), each of its input's shape.
    let backward: (Tensor) -> [Tensor?]

    init(name: String, inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }
}

public enum Autograd {
    /// Task-local (thread-local outside tasks), so a no-grad scope on one thread never leaks into another.
    @TaskLocal private static var noGrad = false

    /// Whether ops record themselves for `backward()`; false inside `withNoGrad`.
    public static var isRecording: Bool { !noGrad }

    /// Runs `body` without recording anything: for inference, evaluation and optimiser updates.
    public static func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
        try $noGrad.withValue(true) { try body() }
    }
}

/// Attaches `output` to the graph when recording and some input requires grad; returns `output`.
@discardableResult
func record(
    _ output: Tensor, inputs: [Tensor], _ name: String,
    backward: @escaping (Tensor) -> [Tensor?]
) -> Tensor {
    guard Autograd.isRecording, inputs.contains(where: { $0.requiresGrad }) else { return output }
    output.requiresGrad = true
    output.gradNode = GradNode(name: name, inputs: inputs, backward: backward)
    return output
}

extension Tensor {
    /// Computes the gradient of this tensor with respect to every leaf that requires grad, adding it into the leaf's
    /// `grad`. Without an argument the tensor must hold one value (a loss); otherwise `gradient` is d(loss)/d(self).
    /// The recorded graph is released as it is consumed, as PyTorch does without `retain_graph`.
    ///
    /// `leafReady` is called with each leaf as soon as its gradient for this pass is final, i.e. once every op that
    /// used it has been walked (PyTorch's gradient hooks, which DDP buckets by): data parallelism starts reducing the
    /// first gradients while the rest of the pass is still running.
    public func backward(_ gradient: Tensor? = nil, leafReady: ((Tensor) -> Void)? = nil) {
        precondition(requiresGrad, "backward() on a tensor that does not require grad: nothing recorded leads to it")
        let seed: Tensor
        if let gradient {
            precondition(gradient.shape == shape, "gradient shape \(gradient.shape) differs from tensor shape \(shape)")
            seed = gradient
        } else {
            precondition(count == 1, "backward() without a gradient needs a one-element tensor, shape is \(shape)")
            seed = Tensor.ones(shape)
        }

        // Every tensor the loss depends on, with how many recorded uses of it there are (a use per input slot).
        var usesLeft: [ObjectIdentifier: Int] = [:]
        var visited: Set<ObjectIdentifier> = [ObjectIdentifier(self)]
        var toVisit = [self]
        while let tensor = toVisit.popLast() {
            for input in tensor.gradNode?.inputs ?? [] where input.requiresGrad {
                usesLeft[ObjectIdentifier(input), default: 0] += 1
                if visited.insert(ObjectIdentifier(input)).inserted { toVisit.append(input) }
            }
        }

        // The walk back: a tensor is processed once every op that used it has passed its gradient on (so its gradient
        // is whole), the most recently readied first. A leaf's gradient is thus final, and handed to `leafReady`, as
        // early as the graph allows: a weight right after the backward of the product that used it, not at the end.
        var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        var ready = [self]
        Autograd.withNoGrad {
            while let tensor = ready.popLast() {
                let grad = pending.removeValue(forKey: ObjectIdentifier(tensor))
                guard let node = tensor.gradNode else {
                    // A leaf: accumulate across uses and across backward() calls.
                    if let grad {
                        tensor.grad = tensor.grad.map { $0 + grad } ?? grad
                        leafReady?(tensor)
                    }
                    continue
                }
                if let grad {
                    let inputGrads = node.backward(grad)
                    precondition(inputGrads.count == node.inputs.count, "\(node.name) returned the wrong number of grads")
                    for (input, inputGrad) in zip(node.inputs, inputGrads) where input.requiresGrad {
                        guard var inputGrad else { continue }
                        // A gradient has its tensor's dtype (a float32 residual feeding a bf16 branch sends it bf16).
                        if inputGrad.dtype != input.dtype { inputGrad = inputGrad.converted(to: input.dtype) }
                        precondition(
                            inputGrad.shape == input.shape,
                            "\(node.name) backward made a gradient of shape \(inputGrad.shape) for input \(input.shape)")
                        let key = ObjectIdentifier(input)
                        pending[key] = pending[key].map { $0 + inputGrad } ?? inputGrad
                    }
                    tensor.gradNode = nil
                }
                for input in node.inputs where input.requiresGrad {
                    let key = ObjectIdentifier(input)
                    usesLeft[key, default: 1] -= 1
                    if usesLeft[key] == 0 { ready.append(input) }
                }
            }
        }
    }
}
