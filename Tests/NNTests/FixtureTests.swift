import Checkpoints
import Foundation
import NN
import Tensors
import Testing
import TestSupport

/// torch.optim trajectories and F.cross_entropy values from `../shared/fixtures/optim` (copied into Fixtures/).
@Suite struct OptimizerFixtureTests {
    let reference: SafetensorsFile

    init() throws {
        let url = Fixtures.url("NNTests", "optim-reference.safetensors")
        reference = try SafetensorsFile(contentsOf: url)
    }

    /// Three steps from param0 with grad0, grad1, grad2; after each, the parameter must match torch to 1e-5.
    func follow(_ name: String, _ makeOptimizer: (Tensor) -> Optimizer) throws {
        let parameter = try reference.tensor("param0")
        parameter.requiresGrad = true
        let optimizer = makeOptimizer(parameter)
        for step in 0..<3 {
            parameter.grad = try reference.tensor("grad\(step)")
            optimizer.step()
            expectClose(parameter.toArray(), try reference.tensor("\(name).after\(step)").toArray(), tolerance: 1e-5)
        }
    }

    @Test func adamW() throws {
        try follow("adamw") { AdamW([$0], learningRate: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05) }
    }

    @Test func adam() throws {
        try follow("adam") { Adam([$0], learningRate: 1e-2) }
    }

    @Test func sgdNesterov() throws {
        try follow("sgd_nesterov") { SGD([$0], learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-4) }
    }

    func checkCrossEntropy(_ name: String, loss: (Tensor) -> Tensor) throws {
        let logits = try reference.tensor("ce.logits")
        logits.requiresGrad = true
        let value = loss(logits)
        value.backward()
        expectClose([value.item()], try reference.tensor("ce.\(name).loss").toArray(), tolerance: 1e-5)
        expectClose(logits.grad!.toArray(), try reference.tensor("ce.\(name).grad").toArray(), tolerance: 1e-5)
    }

    @Test func crossEntropyWithIntegerTargets() throws {
        let targets = try reference.integers("ce.targets")
        try checkCrossEntropy("ls0.0") { $0.crossEntropy(targets: targets) }
        try checkCrossEntropy("ls0.1") { $0.crossEntropy(targets: targets, labelSmoothing: 0.1) }
    }

    @Test func crossEntropyWithSoftTargets() throws {
        let targets = try reference.tensor("ce.soft.targets")
        try checkCrossEntropy("soft") { $0.crossEntropy(softTargets: targets) }
    }
}
