import Foundation
import Tensors

/// DeiT's distillation (Touvron et al. 2021; facebookresearch/deit `losses.py`, `DistillationLoss`): the class-token
/// head learns the labels, the distillation-token head learns the teacher, and the loss mixes the two.
public struct Distillation: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Cross-entropy against the teacher's top class (DeiT's best).
        case hard
        /// KL divergence to the teacher's distribution at temperature tau.
        case soft
    }

    public var kind = Kind.hard
    /// The distillation term's weight: loss = (1 - alpha) · base + alpha · distillation.
    public var alpha: Float = 0.5
    /// Soft distillation's temperature.
    public var tau: Float = 1

    public init(kind: Kind = .hard, alpha: Float = 0.5, tau: Float = 1) {
        (self.kind, self.alpha, self.tau) = (kind, alpha, tau)
    }

    /// The distillation term for the distillation head's logits [B, C] and the teacher's [B, C] (constant): hard,
    /// the cross-entropy against the teacher's argmax; soft, KL(teacher ‖ student) at temperature tau, summed and
    /// scaled by tau² / (B · C), as DeiT's code does.
    public func term(distillationLogits: Tensor, teacherLogits: Tensor) -> Tensor {
        let teacher = teacherLogits.detach()
        switch kind {
        case .hard:
            return distillationLogits.crossEntropy(targets: teacher.argmax(axis: 1))
        case .soft:
            let student = (distillationLogits / tau).logSoftmax()  // [B, C]
            let target = Autograd.withNoGrad { (teacher / tau).logSoftmax() }
            let kl = (target.exp() * (target - student)).sum()
            return kl * (tau * tau / Float(distillationLogits.count))
        }
    }

    /// DeiT's total: (1 - alpha) · base + alpha · term.
    public func loss(base: Tensor, distillationLogits: Tensor, teacherLogits: Tensor) -> Tensor {
        base * (1 - alpha) + term(distillationLogits: distillationLogits, teacherLogits: teacherLogits) * alpha
    }
}
