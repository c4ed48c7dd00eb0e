import Foundation
import NN
import Tensors
import Testing

/// End to end: an MLP trained with AdamW on two interleaved spirals must classify held-out points.
@Suite struct LearningTests {
    /// Two spirals of `count` points each, with Gaussian noise.
    func spirals(count: Int, noise: Float, seed: UInt64) -> (Tensor, [Int]) {
        var rng = SeededGenerator(seed: seed)
        var points: [Float] = [], labels: [Int] = []
        for label in 0..<2 {
            for i in 0..<count {
                let r = Float(i) / Float(count) * 5 + 0.2
                let angle = 1.75 * r + Float(label) * Float.pi
                points += [r * cos(angle) + noise * rng.nextNormal(), r * sin(angle) + noise * rng.nextNormal()]
                labels.append(label)
            }
        }
        return (Tensor(points, shape: [2 * count, 2]).reshape([2 * count, 2]) / 5, labels)
    }

    final class SpiralNet: Module {
        let fc1 = Linear(2, 64), fc2 = Linear(64, 64), fc3 = Linear(64, 2)
        func callAsFunction(_ x: Tensor) -> Tensor { fc3(fc2(fc1(x, activation: .geluErf), activation: .geluErf)) }
    }

    @Test func mlpLearnsTwoSpirals() {
        GlobalRandom.seed(1)
        let (train, trainLabels) = spirals(count: 300, noise: 0.05, seed: 2)
        let (test, testLabels) = spirals(count: 200, noise: 0.05, seed: 3)
        let net = SpiralNet()
        for p in net.parameters() where p.rank == 2 {  // Xavier suits a small MLP better than std 0.02
            p.assign(Init.xavierUniform(p.shape))
        }
        let optimizer = AdamW(ParameterGroup.standard(net, weightDecay: 1e-4), learningRate: 1e-2)
        let schedule = WarmupCosineSchedule(base: 1e-2, warmupSteps: 20, totalSteps: 600, minimum: 1e-4)
        var firstLoss: Float = 0, lastLoss: Float = 0
        for step in 0..<600 {
            optimizer.learningRate = schedule.learningRate(at: step)
            let loss = net(train).crossEntropy(targets: trainLabels)
            if step == 0 { firstLoss = loss.item() }
            lastLoss = loss.item()
            loss.backward()
            optimizer.step()
            optimizer.zeroGrad()
        }
        let predictions = Autograd.withNoGrad { net(test) }.argmax(axis: 1)
        let accuracy = Float(zip(predictions, testLabels).filter { $0 == $1 }.count) / Float(testLabels.count)
        #expect(lastLoss < firstLoss / 5, "loss \(firstLoss) -> \(lastLoss)")
        #expect(accuracy >= 0.95, "held-out accuracy \(accuracy)")
    }
}
