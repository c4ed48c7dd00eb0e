import Checkpoints
import Datasets
import Foundation
import Tensors
import TestSupport
import Testing
@testable import Training
import ViT

/// DeiT's DistillationLoss against its fixture (`../shared/fixtures/losses/`, `deit.*`): the loss and the gradients
/// of both heads, hard and soft (tau 3), alpha 0.5, label smoothing 0.1 on the base loss.
@Suite struct DistillationTests {
    @Test(arguments: [("hard", Distillation(kind: .hard)), ("soft_tau3", Distillation(kind: .soft, tau: 3))])
    func lossAndGradientsMatchDeiT(name: String, distillation: Distillation) throws {
        let url = Fixtures.url("TrainingTests", "deit-losses.safetensors")
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

/// DeiT training: the distillation head learns the teacher's decisions, and the teacher sees the student's batch at
/// its own size and normalisation.
@Suite(.serialized) struct DistillationTrainingTests {
    func distilledStudent(seed: UInt64) throws -> VisionTransformer {
        var config = try tinyModel(seed: seed).config
        config.distillationToken = true
        return try GlobalRandom.using(RandomStream(SeededGenerator(seed: seed))) { try VisionTransformer(config) }
    }

    @Test func distillationHeadLearnsTheTeacher() throws {
        // The teacher: a tiny ViT trained on the labels.
        let train = quadrantDataset(count: 384, seed: 1), heldOut = quadrantDataset(count: 128, seed: 2)
        var options = TrainingOptions()
        (options.epochs, options.batchSize, options.learningRate, options.warmupEpochs) = (4, 32, 3e-3, 0.5)
        options.augmentation = .none
        let teacherFolder = try temporaryFolder(), studentFolder = try temporaryFolder()
        defer { for f in [teacherFolder, studentFolder] { try? FileManager.default.removeItem(at: f) } }
        let teacherRun = try Trainer(
            model: try tinyModel(seed: 3), options: options, trainSet: train, validationSet: nil, folder: teacherFolder)
        _ = try teacherRun.run()
        let teacher = teacherRun.model
        teacher.eval()

        options.distillation = Distillation(kind: .hard, alpha: 0.5)
        options.teacher = teacherFolder.path
        let student = try Trainer(
            model: try distilledStudent(seed: 4), options: options, trainSet: train, validationSet: heldOut, folder: studentFolder,
            teacher: teacher)
        #expect(try student.run() == .finished)
        let images = TrainingLoader.normalisedBatch(
            (0..<heldOut.count).map { heldOut.image($0) }, mean: [0.3, 0.3, 0.3], std: [0.3, 0.3, 0.3])
        student.model.eval()
        let (taught, outputs) = Autograd.withNoGrad { (teacher(images).argmax(axis: 1), student.model.classify(images)) }
        let agreement = zip(outputs.distillationHeadLogits!.argmax(axis: 1), taught).filter { $0 == $1 }.count
        #expect(
            Double(agreement) / Double(heldOut.count) > 0.6,
            "the distillation head agrees with the teacher on \(agreement) of \(heldOut.count)")
        let last = student.state.history.last!
        #expect(last.validationTop1! > 0.5 && last.validationClassHeadTop1 != nil && last.validationDistillationHeadTop1 != nil)
    }

    @Test func teacherSeesTheBatchAtItsSizeAndNormalisation() throws {
        let student = try tinyModel(seed: 5)  // 8 px, mean = std = 0.3
        var config = student.config
        (config.imageSize, config.data.mean, config.data.std) = (16, [0.5, 0.4, 0.3], [0.2, 0.25, 0.5])
        let teacher = try VisionTransformer(config)
        var rng = SeededGenerator(seed: 6)
        let images = Tensor.randn([2, 3, 8, 8], using: &rng)
        let input = Trainer.teacherInput(images, student: student, teacher: teacher)
        #expect(input.shape == [2, 3, 16, 16])
        // A constant image stays constant through the resize, and is renormalised channel by channel.
        let flat = Tensor.full([1, 3, 8, 8], 0.5)  // pixel value 0.3 + 0.5 * 0.3 = 0.45
        let values = Trainer.teacherInput(flat, student: student, teacher: teacher).toArray()
        for c in 0..<3 {
            let expected = (Float(0.45) - config.data.mean[c]) / config.data.std[c]
            #expect(values[(c * 256)..<((c + 1) * 256)].allSatisfy { abs($0 - expected) < 1e-4 }, "channel \(c)")
        }
    }
}
