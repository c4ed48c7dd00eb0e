import Checkpoints
import Foundation
import Tensors
import Testing
import Training

/// DeiT's DistillationLoss against its fixture (`../shared/fixtures/losses/`, `deit.*`): the loss and the gradients
/// of both heads, hard and soft (tau 3), alpha 0.5, label smoothing 0.1 on the base loss.
@Suite struct DistillationTests {
    @Test(arguments: [("hard", Distillation(kind: .hard)), ("soft_tau3", Distillation(kind: .soft, tau: 3))])
    func lossAndGradientsMatchDeiT(name: String, distillation: Distillation) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/deit-losses.safetensors")
        let ref = try SafetensorsFile(contentsOf: url)
        let cls = try ref.tensor("deit.student_cls"), dist = try ref.tensor("deit.student_dist")
        cls.requiresGrad = true
        dist.requiresGrad = true
        let labels = try ref.tensor("deit.labels").toArray().map { Int($0) }
        let base = cls.crossEntropy(targets: labels, labelSmoothing: 0.1)
        let loss = distillation.loss(base: base, distillationLogits: dist, teacherLogits: try ref.tensor("deit.teacher"))
        let expected = try ref.tensor("deit.\(name).loss").item()
        #expect(abs(loss.item() - expected) < 1e-5, "\(name) loss \(loss.item()) vs \(expected)")
        loss.backward()
        for (head, tensor) in [("cls", cls), ("dist", dist)] {
            let worst = zip(tensor.grad!.toArray(), try ref.tensor("deit.\(name).grad_\(head)").toArray()).map { abs($0 - $1) }.max() ?? 1
            #expect(worst < 1e-6, "\(name) gradient of the \(head) head: max difference \(worst)")
        }
    }
}
