import Foundation
import Tensors

/// Parameters that share optimiser settings. timm puts biases, norms, tokens and position embeddings in a group
/// with no weight decay; `ParameterGroup.standard` does the same.
public struct ParameterGroup {
    public var parameters: [Tensor]
    public var weightDecay: Float
    /// This group's learning rate as a fraction of the optimiser's (layer-wise decay); decoupled weight decay
    /// scales with it too, as PyTorch's optimisers apply a group's own `lr`.
    public var learningRateScale: Float

    public init(parameters: [Tensor], weightDecay: Float, learningRateScale: Float = 1) {
        self.parameters = parameters
        self.weightDecay = weightDecay
        self.learningRateScale = learningRateScale
    }

    /// Two groups: weights of rank >= 2 decay; biases, norm scales, tokens and position embeddings do not.
    public static func standard(
        _ model: Module, weightDecay: Float,
        noDecayNames: Set<String> = ["cls_token", "dist_token", "pos_embed", "reg_token"]
    )
        -> [ParameterGroup]
    {
        var decay: [Tensor] = [], noDecay: [Tensor] = []
        for (name, tensor) in model.namedParameters() where tensor.requiresGrad {
            let leaf = name.split(separator: ".").last.map(String.init) ?? name
            if tensor.rank <= 1 || name.hasSuffix(".bias") || noDecayNames.contains(leaf) {
                noDecay.append(tensor)
            } else {
                decay.append(tensor)
            }
        }
        return [
            ParameterGroup(parameters: decay, weightDecay: weightDecay),
            ParameterGroup(parameters: noDecay, weightDecay: 0)
        ]
    }

    /// Layer-wise learning-rate decay, as MAE's `param_groups_lrd` (BEiT's recipe for fine-tuning): the patch
    /// embedding, class token and position embeddings are layer 0, block k is layer k + 1, everything after the
    /// blocks (norms, head) is layer depth + 1; a parameter's scale is decay^(depth + 1 - layer). Weight decay
    /// as `standard`. One group per (layer, decays) pair, in layer order.
    public static func layerDecayed(
        _ model: Module, depth: Int, weightDecay: Float, layerDecay: Float,
        noDecayNames: Set<String> = ["cls_token", "dist_token", "pos_embed", "reg_token"]
    ) -> [ParameterGroup] {
        var groups: [String: ParameterGroup] = [:]
        var order: [String] = []
        for (name, tensor) in model.namedParameters() where tensor.requiresGrad {
            let layer = layerIndex(name, depth: depth)
            let leaf = name.split(separator: ".").last.map(String.init) ?? name
            let decays = !(tensor.rank <= 1 || name.hasSuffix(".bias") || noDecayNames.contains(leaf))
            let key = "\(layer) \(decays)"
            if groups[key] == nil {
                order.append(key)
                let scale = Float(Foundation.pow(Double(layerDecay), Double(depth + 1 - layer)))
                groups[key] = ParameterGroup(parameters: [], weightDecay: decays ? weightDecay : 0, learningRateScale: scale)
            }
            groups[key]!.parameters.append(tensor)
        }
        return order.map { groups[$0]! }
    }

    /// MAE's `get_layer_id_for_vit`.
    public static func layerIndex(_ name: String, depth: Int) -> Int {
        if ["cls_token", "dist_token", "pos_embed", "reg_token", "mask_token"].contains(name) || name.hasPrefix("patch_embed") { return 0 }
        if name.hasPrefix("blocks."), let k = Int(name.dropFirst(7).prefix { $0 != "." }) { return k + 1 }
        return depth + 1
    }
}

/// Updates parameters from their gradients. Call `step()` after `backward()`, then `zeroGrad()`.
public protocol Optimizer: AnyObject {
    var groups: [ParameterGroup] { get }
    /// The learning rate of the next step; a schedule sets it before each step.
    var learningRate: Float { get set }
    func step()
    /// The per-parameter state (moments, momentum buffers) and step count, for checkpoints.
    func state() -> [String: Tensor]
    func load(state: [String: Tensor]) throws
}

extension Optimizer {
    public var allParameters: [Tensor] { groups.flatMap(\.parameters) }

    /// Drops every gradient, ready for the next backward pass.
    public func zeroGrad() { for p in allParameters { p.grad = nil } }
}

public struct OptimizerStateError: Error, CustomStringConvertible {
    public let description: String
}

/// Loads `saved` into `buffers` (named `prefix.i`), checking every name and shape.
func loadBuffers(_ buffers: [Tensor], prefix: String, from state: [String: Tensor]) throws {
    for (i, buffer) in buffers.enumerated() {
        guard let saved = state["\(prefix).\(i)"] else {
            throw OptimizerStateError(description: "optimiser state has no \(prefix).\(i)")
        }
        guard saved.shape == buffer.shape else {
            throw OptimizerStateError(description: "optimiser state \(prefix).\(i) is \(saved.shape), expected \(buffer.shape)")
        }
        buffer.assign(saved)
    }
}

/// Scales all gradients so that their global L2 norm is at most `maxNorm` (as `torch.nn.utils.clip_grad_norm_`).
/// Returns the norm before clipping. Gradients are replaced, not changed in place (two may share storage).
@discardableResult
public func clipGradientNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    var total = 0.0
    for p in parameters {
        guard let g = p.grad else { continue }
        total += g.device.backend.sumOfSquares(g)
    }
    let norm = Float(total.squareRoot())
    let factor = maxNorm / (norm + 1e-6)
    if factor < 1 {
        Autograd.withNoGrad {
            for p in parameters { if let g = p.grad { p.grad = g * factor } }
        }
    }
    return norm
}
