import CLIP
import Checkpoints
import Foundation
import Images
import Tensors
import TestSupport
import Testing
import Training

/// What the shared run loop (`Training`) does for every trainer: metrics lines that say their kind, run states saved
/// before the loop was shared, the recipe checks all methods share.
@Suite(.serialized) struct RunLoopTests {
    /// Each line of metrics.jsonl starts with its kind, and reading the file gives back the history.
    @Test func metricsLinesSayTheirKindAndReadBack() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var options = TrainingOptions()
        (options.epochs, options.batchSize, options.warmupEpochs) = (2, 16, 0)
        let trainer = try Trainer(
            model: try tinyModel(seed: 8), options: options, trainSet: quadrantDataset(count: 32, seed: 1), validationSet: nil,
            folder: folder)
        #expect(try trainer.run() == .finished)
        let url = folder.appendingPathComponent("metrics.jsonl")
        let text = try String(contentsOf: url, encoding: .utf8)
        #expect(text.split(separator: "\n").allSatisfy { $0.hasPrefix("{\"kind\":\"train\",\"epoch\":") }, "\(text)")
        #expect(try MetricsFile.read(url) == trainer.state.history.map(MetricsFile.Line.train))

        // A pre-training record with a kind is read as one, although its fields would also decode otherwise; a line
        // without a kind (written before kinds) is still read by its fields; a kind no command writes is refused.
        let pretraining = try JSONDecoder().decode(
            PretrainingRecord.self, from: Data(#"{"epoch":1,"images_per_second":10,"loss":0.5,"lr":0.001,"seconds":1}"#.utf8))
        try Data((pretraining.json() + "\n{\"epoch\":2,\"images_per_second\":9,\"loss\":0.4,\"lr\":0.001,\"seconds\":1}\n").utf8)
            .write(to: url)
        let lines = try MetricsFile.read(url)
        #expect(lines.first == .pretrain(pretraining) && lines.count == 2)
        try Data("{\"kind\":\"detect\",\"epoch\":1}\n".utf8).write(to: url)
        #expect { try MetricsFile.read(url) } throws: { "\($0)".contains("line 1 has kind \"detect\"") }
    }

    /// A run state saved before the loop was shared (each trainer's sums under its own names) still resumes: its
    /// sums become the named sums, `vit train`'s loss sum per step.
    @Test func aRunStateOfTheSeparateTrainersDecodes() throws {
        let training = """
            {"batch":2,"correct":5,"epoch":1,"history":[],"lossSum":48,"seen":32,"step":10,"trainingSeconds":1.5}
            """
        let state = try JSONDecoder().decode(RunState<EpochRecord>.self, from: Data(training.utf8))
        #expect(state.epoch == 1 && state.batch == 2 && state.step == 10 && state.seen == 32)
        #expect(state.sums == ["loss": 3, "correct": 5])
        let pretraining = """
            {"batch":3,"epoch":0,"history":[],"lossSum":1.5,"rankingLossSum":0.9,"seen":48,"step":3,"steps":3,"trainingSeconds":2}
            """
        let saved = try JSONDecoder().decode(RunState<PretrainingRecord>.self, from: Data(pretraining.utf8))
        #expect(saved.sums == ["loss": 1.5, "ranking_loss": 0.9] && saved.random == nil)
    }

    /// The checks every recipe shares name the field, whichever method's recipe it is; the command line names the
    /// flag instead (`FieldProblem.described(naming:)`).
    @Test func everyRecipeChecksTheSharedSettings() {
        func problems<R: Recipe>(_ recipe: R) -> String {
            do {
                try recipe.validate()
                return ""
            } catch { return "\(error)" }
        }
        var training = TrainingOptions()
        training.minLearningRate = -1
        #expect(problems(training).contains("minLearningRate must be zero or more, got -1.0"))
        var pretraining = PretrainingOptions()
        pretraining.warmupEpochs = 200
        #expect(problems(pretraining).contains("warmupEpochs: a warm-up of 200.0 epochs must be shorter than the 100 epochs"))
        var contrastive = ContrastiveOptions()
        contrastive.batchSize = 1
        contrastive.weightDecay = .nan
        #expect(
            problems(contrastive).contains("batchSize must be at least 2") && problems(contrastive).contains("weightDecay must be zero"))
        #expect(problems(TrainingOptions()).isEmpty && problems(PretrainingOptions()).isEmpty && problems(ContrastiveOptions()).isEmpty)
        var both = TrainingOptions()
        (both.learningRate, both.emaDecay) = (-1, 2)
        #expect {
            try both.validate()
        } throws: { error in
            guard case TrainingError.badFields(let problem)? = error as? TrainingError else { return false }
            return problem.described(naming: ["learningRate": "--lr", "emaDecay": "--ema"])
                == "--lr must be a positive number, got -1.0; --ema must be in (0, 1), got 2.0"
        }
    }

    /// CLIP trains in mixed precision too: the bf16 run's losses stay within a few hundredths of float32's.
    @Test func contrastiveTrainingInMixedPrecisionFollowsFloat32() throws {
        var losses: [[Double]] = []
        for autocast in [nil, DType.bfloat16] {
            let folder = try temporaryFolder()
            defer { try? FileManager.default.removeItem(at: folder) }
            var options = contrastiveOptions(epochs: 2)
            options.autocast = autocast
            let trainer = try ContrastiveTrainer(
                model: tinyCLIP(seed: 3), tokenizer: try CLIPTokenizer.openAI(), options: options, data: colourCaptions(count: 32, seed: 2),
                folder: folder)
            #expect(try trainer.run() == .finished)
            #expect(trainer.state.history.map(\.precision) == [autocast == nil ? "fp32" : "bf16", autocast == nil ? "fp32" : "bf16"])
            losses.append(trainer.state.history.map(\.loss))
        }
        let largest = zip(losses[0], losses[1]).map { abs($0 - $1) }.max() ?? .nan
        #expect(largest < 0.05, "fp32 \(losses[0]), bf16 \(losses[1])")
    }

    /// A Swift caller plans a run as `vit train` does: from a folder of images to a trainer, stopped and resumed; a plan
    /// that cannot run names its fields (the command line names its flags instead).
    @Test func aTrainingPlanStartsAndResumesARun() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = quadrantDataset(count: 32, seed: 5)
        for i in 0..<data.count {
            let folder = root.appendingPathComponent("images/\(data.classNames[data.labels[i]])")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try PNG.write(data.image(i), to: folder.appendingPathComponent("\(i).png"))
        }
        var recipe = TrainingOptions()
        (recipe.epochs, recipe.batchSize, recipe.warmupEpochs) = (2, 8, 0)
        var plan = TrainingPlan(data: root.appendingPathComponent("images"), recipe: recipe)
        (plan.validationSplit, plan.shape.width, plan.shape.depth, plan.shape.heads, plan.shape.patchSize) = (0.25, 16, 1, 2, 4)
        var lines: [String] = []
        plan.log = { lines.append($0) }
        let run = root.appendingPathComponent("run")
        let trainer = try plan.start(in: run)
        #expect(trainer.trainSet.count == 24 && trainer.validationSet?.count == 8 && trainer.model.architecture.numClasses == 4)
        #expect(lines.contains { $0.contains("24 training images of 8x8, 4 classes") }, "\(lines)")
        trainer.stepLimit = 2
        #expect(try trainer.run() == .stopped)
        let resumed = try plan.resume(in: run, epochs: nil, precision: nil)
        #expect(resumed.state.step == 2 && resumed.validationSet?.count == 8)

        var resnet = plan
        (resnet.shape.preset, resnet.shape.width, resnet.shape.depth, resnet.shape.heads) = ("resnet18", nil, 4, nil)
        resnet.shape.patchSize = nil
        #expect { try resnet.start(in: root.appendingPathComponent("resnet")) } throws: { error in
            guard case TrainingError.badFields(let problem)? = error as? TrainingError else { return false }
            return "\(problem)".hasPrefix("shape.depth shapes a ViT")
                && problem.described(naming: ["shape.depth": "--depth"]).hasPrefix("--depth shapes a ViT")
        }
    }

    /// A run checkpoint carries a CRC-32 of its tensors and state: any of 25 flipped bytes, spread over the file, stops
    /// --resume with an error naming the file; a state rewritten with a fresh checksum (as an attacker would) is still
    /// checked field by field (a negative epoch, an epoch count the history does not match, a huge RandAugment).
    @Test func runCheckpointsAreCheckedBeforeTheyResume() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        var options = TrainingOptions()
        (options.epochs, options.batchSize, options.warmupEpochs) = (3, 16, 0)
        let data = quadrantDataset(count: 32, seed: 9)
        let run = root.appendingPathComponent("run")
        let trainer = try Trainer(model: try tinyModel(seed: 1), options: options, trainSet: data, validationSet: nil, folder: run)
        trainer.stepLimit = 3
        #expect(try trainer.run() == .stopped)
        let checkpoint = run.appendingPathComponent("checkpoint.safetensors")
        let original = try Data(contentsOf: checkpoint)
        #expect(try SafetensorsFile(contentsOf: checkpoint).verifyChecksum())
        _ = try Trainer.resume(folder: run, trainSet: data, validationSet: nil)

        for k in 0..<25 {
            var bytes = [UInt8](original)
            bytes[(bytes.count - 1) * k / 24] ^= 0x5A
            try Data(bytes).write(to: checkpoint)
            #expect(throws: (any Error).self, "byte \((bytes.count - 1) * k / 24) flipped") {
                try Trainer.resume(folder: run, trainSet: data, validationSet: nil)
            }
        }

        func rewritten(_ edit: (inout [String: Any]) -> Void) throws -> String {
            let file = try SafetensorsFile(contentsOf: checkpoint)
            var metadata = file.metadata
            var saved = try JSONSerialization.jsonObject(with: Data(metadata["swiftvit_training"]!.utf8)) as! [String: Any]
            edit(&saved)
            metadata["swiftvit_training"] = String(decoding: try JSONSerialization.data(withJSONObject: saved), as: UTF8.self)
            try Safetensors.write(file.allTensors(), metadata: metadata, checksum: true, to: checkpoint)
            do {
                _ = try Trainer.resume(folder: run, trainSet: data, validationSet: nil)
                return "resumed"
            } catch { return "\(error)" }
        }
        try Data(original).write(to: checkpoint)
        var state: (inout [String: Any]) -> Void = { saved in
            var s = saved["state"] as! [String: Any]
            s["epoch"] = -1
            saved["state"] = s
        }
        #expect(try rewritten(state).contains("epoch -1 is outside"))
        state = { saved in
            var s = saved["state"] as! [String: Any]
            s["epoch"] = 2
            saved["state"] = s
        }
        #expect(try rewritten(state).contains("1 epoch records for 2 epochs done"))
        state = { saved in
            var o = saved["options"] as! [String: Any], a = o["augmentation"] as! [String: Any]
            a["randAugmentOps"] = 1 << 40
            o["augmentation"] = a
            saved["options"] = o
        }
        #expect(try rewritten(state).contains("randAugmentOps must be in 0...16"))
    }
}
