import Checkpoints
import Foundation
import Images
import Tensors
import TestSupport
import Testing

/// The `vit` executable as a user runs it: one vocabulary across commands, images of any size, exit statuses that
/// mean something (0 all done, 1 some inputs failed, 2 nothing could be done).
@Suite(.serialized) struct CommandLineTests {
    /// The `vit` built beside this test bundle.
    static let executable: URL = {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("vit")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        return Fixtures.repository.appendingPathComponent(".build/debug/vit")
    }()

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    func vit(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes before waiting, so that neither fills up and blocks the child.
        let outData = out.fileHandleForReading.readDataToEndOfFile(), errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    /// root/<class>/<n>.png in three sizes per class, none square except one: what a folder of photos looks like.
    func photoFolder(_ root: URL) throws {
        for (c, name) in ["cat", "dog"].enumerated() {
            let folder = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for (n, (w, h)) in [(48, 36), (40, 40), (30, 52)].enumerated() {
                let pixels = (0..<(w * h)).flatMap { i -> [UInt8] in [UInt8((i * 7 + n) % 256), UInt8(120 * c), UInt8(i % w)] }
                try PNG.write(RGBImage(width: w, height: h, pixels: pixels), to: folder.appendingPathComponent("\(n).png"))
            }
        }
    }

    /// `vit inspect curves` draws several runs' metrics in one figure; a folder without metrics is one clear error.
    @Test func runsAreComparedInOneFigure() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        for (name, offset) in [("fp32", 0.0), ("bf16", 0.01)] {
            let run = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
            let lines = (1...3).map { epoch in
                "{\"epoch\":\(epoch),\"images_per_second\":50,\"lr\":0.001,\"seconds\":10,\"train_accuracy\":\(0.2 * Double(epoch)),\"train_loss\":\(2.0 - 0.3 * Double(epoch) + offset),\"val_loss\":\(1.9 - 0.3 * Double(epoch)),\"val_top1\":\(0.25 * Double(epoch)),\"val_top5\":0.9}"
            }
            try Data(lines.joined(separator: "\n").utf8).write(to: run.appendingPathComponent("metrics.jsonl"))
        }
        let out = root.appendingPathComponent("figures")
        let result = try vit([
            "inspect", "curves", root.appendingPathComponent("fp32").path, root.appendingPathComponent("bf16").path, "-o", out.path
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let figure = try RGBImage(contentsOf: out.appendingPathComponent("curves.png"))
        #expect(figure.width == 960 && figure.height == 380)
        let missing = try vit(["inspect", "curves", root.appendingPathComponent("nothing").path, "-o", out.path])
        #expect(missing.status == 2 && missing.stderr.contains("metrics.jsonl: no such file"))

        // vit pretrain's records (HPM's with a ranking loss) have no accuracy: the loss panel alone, 640 wide.
        let hpm = root.appendingPathComponent("hpm")
        try FileManager.default.createDirectory(at: hpm, withIntermediateDirectories: true)
        let pretraining = (1...3).map { epoch in
            "{\"epoch\":\(epoch),\"images_per_second\":120,\"loss\":\(1.0 / Double(epoch)),\"lr\":0.001,\"ranking_loss\":0.6,\"seconds\":10}"
        }
        try Data(pretraining.joined(separator: "\n").utf8).write(to: hpm.appendingPathComponent("metrics.jsonl"))
        let pretrained = try vit(["inspect", "curves", hpm.path, "-o", out.path])
        #expect(pretrained.status == 0, "\(pretrained.stderr)")
        let lossOnly = try RGBImage(contentsOf: out.appendingPathComponent("curves.png"))
        #expect(lossOnly.width == 640 && lossOnly.height == 380)
        // Beside a supervised run, both panels again.
        let both = try vit(["inspect", "curves", hpm.path, root.appendingPathComponent("fp32").path, "-o", out.path])
        #expect(both.status == 0, "\(both.stderr)")
        #expect(try RGBImage(contentsOf: out.appendingPathComponent("curves.png")).width == 960)
        try Data("{\"epoch\":1}\n".utf8).write(to: hpm.appendingPathComponent("metrics.jsonl"))
        let garbled = try vit(["inspect", "curves", hpm.path, "-o", out.path])
        #expect(garbled.status == 2 && garbled.stderr.contains("metrics.jsonl: line 1 is not an epoch record"), "\(garbled.stderr)")
    }

    @Test func aMixedSizePhotoFolderTrainsEvaluatesAndPredicts() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("photos"), run = root.appendingPathComponent("run")
        try photoFolder(data)
        let tiny = ["--width", "32", "--depth", "1", "--heads", "2", "--batch-size", "2"]
        let train = try vit(["train", "--data", data.path, "-o", run.path, "--max-steps", "2", "--epochs", "1"] + tiny)
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stderr.contains("6 training images of 32x32"), "every image kept, at the preset's size: \(train.stderr)")
        #expect(train.stderr.contains("no validation"), "a flat folder has no test part: \(train.stderr)")
        #expect(!train.stderr.contains("left out of each epoch"), "6 images fill 3 batches of 2: \(train.stderr)")
        #expect(!train.stderr.contains("skipped"))
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("model.safetensors").path))
        let predict = try vit(["predict", "--model", run.path, "--json", data.path])
        #expect(predict.status == 0, "\(predict.stderr)")
        #expect(predict.stdout.split(separator: "\n").count == 6)
        let eval = try vit(["eval", "--model", run.path, "--data", data.path, "--json", "-o", root.path])
        #expect(eval.status == 0, "\(eval.stderr)")
        #expect(eval.stdout.contains("\"count\": 6"))

        // A run stopped before its first epoch ends still has a model (the step limit stops mid-epoch here).
        let early = root.appendingPathComponent("early")
        let stopped = try vit(["train", "--data", data.path, "-o", early.path, "--max-steps", "1"] + tiny)
        #expect(stopped.status == 0 && stopped.stderr.contains("stopped in epoch 1"), "\(stopped.stderr)")
        #expect(try vit(["predict", "--model", early.path, data.path]).status == 0)
        // Resumed, the run keeps its recipe: an option that would change it is named, not silently dropped.
        let resumed = try vit(["train", "--data", data.path, "-o", early.path, "--resume", "--max-steps", "1", "--lr", "0.5"] + tiny)
        #expect(
            resumed.status == 0 && resumed.stderr.contains("note: --lr") && resumed.stderr.contains("keeps the recipe"),
            "\(resumed.stderr)")
        // Precision is the host's matter, not the recipe's: a resume may change it, and says so.
        let inBF16 = try vit(["train", "--data", data.path, "-o", early.path, "--resume", "--max-steps", "1", "--precision", "bf16"])
        #expect(
            inBF16.status == 0 && inBF16.stderr.contains("note: continuing in bf16 (the run so far: fp32)")
                && !inBF16.stderr.contains("--precision not used"), "\(inBF16.stderr)")
        let stillBF16 = try vit(["train", "--data", data.path, "-o", early.path, "--resume", "--max-steps", "1"])
        #expect(
            stillBF16.status == 0 && stillBF16.stderr.contains("precision: bf16") && !stillBF16.stderr.contains("continuing in"),
            "\(stillBF16.stderr)")
    }

    static let fixtures = Fixtures.url("ViTTests")

    /// `vit train --init` from a Hugging Face folder and from a PyTorch file runs to a saved model `vit predict` reads.
    @Test(arguments: ["hf-vit-p8-d64-h4-l2-i32", "pth-vit-p8-d64-l2-i32/deit_style.pth"])
    func fineTuningFromAPublishedCheckpointEndsInAModelThatPredicts(checkpoint: String) throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("photos"), run = root.appendingPathComponent("run")
        try photoFolder(data)
        let train = try vit([
            "train", "--init", Self.fixtures.appendingPathComponent(checkpoint).path, "--data", data.path, "-o", run.path,
            "--batch-size", "2", "--epochs", "1", "--max-steps", "2"
        ])
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stderr.contains("fine-tuning") && train.stderr.contains("head replaced"), "\(train.stderr)")
        let predict = try vit(["predict", "--model", run.path, "--json", data.path])
        #expect(predict.status == 0 && predict.stdout.split(separator: "\n").count == 6, "\(predict.stderr)")
    }

    /// `vit inspect reconstruct` of Hugging Face's ViTMAEForPreTraining with the reference noise: the loss of
    /// transformers on the same PNGs, and the mask.
    @Test func reconstructMatchesHuggingFaceLoss() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let official = Self.fixtures.appendingPathComponent("mae-official-p8-d64-l2-i32")
        let result = try vit([
            "inspect", "reconstruct", "--model", Self.fixtures.appendingPathComponent("hf-vit-mae-normpix-p8-d64-l2-i32").path,
            "--noise", official.appendingPathComponent("reference.safetensors").path, "--json", "-o", root.path,
            official.appendingPathComponent("input0.png").path, official.appendingPathComponent("input1.png").path
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let loss = json?["loss"] as? Double ?? .nan
        #expect(abs(loss - 1.3708639) < 1e-4, "loss \(loss)")  // transformers: normpix.loss of the reference
        let mask = json?["mask"] as? [[Int]] ?? []
        #expect(mask.count == 2 && mask.allSatisfy { $0.count == 16 && $0.reduce(0, +) == 12 })
        #expect((json?["loss_per_image"] as? [Double])?.count == 2)
        #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("reconstruction.png").path))
    }

    /// Contrastive training on images with captions beside them, then zero-shot classification with what it wrote
    /// (an open_clip folder); a second run into the same folder is refused, --resume continues it.
    @Test func trainCLIPThenClassifyZeroShot() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let photos = root.appendingPathComponent("photos"), run = root.appendingPathComponent("clip")
        try photoFolder(photos)
        for name in ["cat", "dog"] {
            for n in 0..<3 {
                try "a photo of a \(name)".write(
                    to: photos.appendingPathComponent("\(name)/\(n).txt"), atomically: false, encoding: .utf8)
            }
        }
        let train = try vit([
            "train-clip", "--data", photos.path, "--image-size", "16", "--patch-size", "8", "--width", "32", "--depth", "1",
            "--heads", "2", "--text-width", "32", "--text-depth", "1", "--text-heads", "2", "--context-length", "8", "--embed-dim",
            "16", "--batch-size", "3", "--epochs", "2", "-o", run.path
        ])
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.split(separator: "\n").count == 2 && train.stdout.contains("logit_scale"), "\(train.stdout)")
        let again = try vit(["train-clip", "--data", photos.path, "-o", run.path])
        #expect(again.status == 2 && again.stderr.contains("--resume"), "\(again.stderr)")
        let more = try vit(["train-clip", "--data", photos.path, "-o", run.path, "--resume", "--epochs", "3"])
        #expect(more.status == 0 && more.stderr.contains("resuming at epoch 3"), "\(more.stderr)")
        let zeroshot = try vit([
            "zeroshot", "--model", run.path, "--classes", "cat,dog", "--json", photos.appendingPathComponent("cat/0.png").path
        ])
        #expect(zeroshot.status == 0 && zeroshot.stdout.contains("cat") && zeroshot.stdout.contains("dog"), "\(zeroshot.stderr)")
    }

    /// The whole loop on a folder of photos without labels: pre-train (HPM), look at reconstructions, fine-tune the
    /// encoder into a classifier that predicts.
    @Test func pretrainReconstructAndFineTune() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let photos = root.appendingPathComponent("photos"), run = root.appendingPathComponent("pretrained")
        try photoFolder(photos)
        let pretrain = try vit([
            "pretrain", "--method", "hpm", "--data", photos.path, "--image-size", "16", "--patch-size", "4", "--width", "32",
            "--depth", "1", "--heads", "2", "--decoder-width", "16", "--decoder-depth", "1", "--decoder-heads", "2",
            "--batch-size", "2", "--epochs", "2", "--norm-pix-loss", "-o", run.path
        ])
        #expect(pretrain.status == 0, "\(pretrain.stderr)")
        #expect(pretrain.stdout.split(separator: "\n").count == 2 && pretrain.stdout.contains("ranking_loss"), "\(pretrain.stdout)")
        let again = try vit(["pretrain", "--data", photos.path, "-o", run.path])
        #expect(again.status == 2 && again.stderr.contains("--resume"), "\(again.stderr)")
        // The checkpoint alone resumes the run (a run carried to another machine needs nothing else).
        try FileManager.default.removeItem(at: run.appendingPathComponent("model.safetensors"))
        let more = try vit(["pretrain", "--data", photos.path, "-o", run.path, "--resume", "--epochs", "3"])
        #expect(more.status == 0 && more.stderr.contains("resuming at epoch 3"), "\(more.stderr)")
        let reconstruct = try vit([
            "inspect", "reconstruct", "--model", run.path, "--mask-ratio", "0.5", "--json", "-o", root.appendingPathComponent("r").path,
            photos.path
        ])
        #expect(reconstruct.status == 0 && reconstruct.stdout.contains("\"mask\""), "\(reconstruct.stderr)")
        let tune = root.appendingPathComponent("tuned")
        let train = try vit([
            "train", "--init", run.path, "--data", photos.path, "--pooling", "avg", "--layer-decay", "0.75", "--batch-size", "2",
            "--epochs", "1", "-o", tune.path
        ])
        #expect(train.status == 0 && train.stderr.contains("not used: decoder"), "\(train.stderr)")
        #expect(try vit(["predict", "--model", tune.path, photos.path]).status == 0)
        #expect(try vit(["inspect", "reconstruct", "--model", tune.path, "-o", root.path, photos.path]).status == 2)
    }

    /// A ResNet trains from the command line and teaches a distilled ViT (DeiT); both predict.
    @Test func resNetTeachesADistilledViT() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let photos = root.appendingPathComponent("photos"), resnet = root.appendingPathComponent("resnet")
        let student = root.appendingPathComponent("deit")
        try photoFolder(photos)
        let common = ["--data", photos.path, "--image-size", "16", "--batch-size", "2", "--epochs", "1", "--max-steps", "2"]
        let deeper = try vit(["train", "--arch", "resnet18", "--depth", "4", "-o", resnet.path] + common)
        #expect(deeper.status == 2 && deeper.stderr.contains("--depth shapes a ViT"), "\(deeper.stderr)")
        let teacher = try vit(["train", "--arch", "resnet18", "--cifar-stem", "--width", "8", "-o", resnet.path] + common)
        #expect(teacher.status == 0 && teacher.stderr.contains("resnet18 (CIFAR stem)"), "\(teacher.stderr)")
        // --width narrows every stage: 8, 16, 32, 64 channels (timm's widths 64...512 at an eighth).
        let config = try String(contentsOf: resnet.appendingPathComponent("config.json"), encoding: .utf8)
        #expect(
            config.replacingOccurrences(of: " ", with: "").replacingOccurrences(of: "\n", with: "").contains("\"channels\":[8,16,32,64]"),
            "\(config)")
        // Asked for bf16, a ResNet says that its convolutions still compute in fp32; a plain ViT has none to mention.
        let predicted = try vit(["predict", "--model", resnet.path, "--precision", "bf16", photos.path])
        #expect(predicted.status == 0 && predicted.stderr.contains("precision: the convolutions run in fp32"), "\(predicted.stderr)")
        let plain = try vit(["predict", "--precision", "bf16", photos.path])
        #expect(plain.status == 0 && !plain.stderr.contains("convolutions"), "\(plain.stderr)")
        // A ResNet fine-tunes from its run like a ViT (here as a linear probe); ViT options are refused.
        let probe = try vit(["train", "--init", resnet.path, "--linear-probe", "-o", root.appendingPathComponent("probe").path] + common)
        #expect(probe.status == 0 && probe.stderr.contains("fine-tuning") && probe.stderr.contains("head kept"), "\(probe.stderr)")
        let pooled = try vit(["train", "--init", resnet.path, "--pooling", "avg", "-o", root.appendingPathComponent("p").path] + common)
        #expect(pooled.status == 2 && pooled.stderr.contains("--pooling"), "\(pooled.stderr)")
        let refused = try vit(["train", "--teacher", resnet.path, "-o", student.path] + common)
        #expect(refused.status == 2 && refused.stderr.contains("--distilled"), "\(refused.stderr)")
        let distilled = try vit(
            [
                "train", "--distilled", "--teacher", resnet.path, "--distillation", "soft", "--tau", "2", "--patch-size", "4", "-o",
                student.path
            ]
                + common)
        #expect(
            distilled.status == 0 && distilled.stderr.contains("teacher: ") && distilled.stderr.contains("soft distillation"),
            "\(distilled.stderr)")
        #expect(try vit(["predict", "--model", student.path, photos.path]).status == 0)
    }

    /// `vit export --format onnx` writes a file (through a rename: no temporary left beside it), and refuses what it
    /// cannot export with one line naming the model. (Tests/ExportTests checks the graphs' numbers; scripts/check-onnx.py
    /// runs them on ONNX Runtime.)
    @Test func exportWritesONNXAndRefusesWhatItCannot() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let file = root.appendingPathComponent("cifar.onnx")
        let exported = try vit(["export", "--format", "onnx", "builtin:cifar10-vit", "-o", file.path])
        #expect(exported.status == 0 && exported.stdout.contains("logits [batch, 10]"), "\(exported.stderr)")
        #expect((try? Data(contentsOf: file).count) ?? 0 > 10_000_000)  // 2.7 M float32 weights
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path) == ["cifar.onnx"])
        let fixtures = Fixtures.url("ViTTests")
        for (model, says) in [("timm-resnet-basic1111-w16-i32", "convolutional network"), ("timm-vit-hybrid-r11-d64-l2-i32", "hybrid")] {
            let path = fixtures.appendingPathComponent(model).path
            let refused = try vit(["export", path, "-o", root.appendingPathComponent("x.onnx").path])
            #expect(refused.status == 2 && refused.stderr.contains(path) && refused.stderr.contains(says), "\(refused.stderr)")
        }
        #expect(try vit(["export", "--format", "tflite", "builtin:cifar10-vit", "-o", file.path]).status == 2)
    }

    /// `vit tokenize` gives open_clip's ids; `vit zeroshot` classifies into named classes with an open_clip folder
    /// and refuses a run without classes.
    @Test func tokenizeAndZeroShot() throws {
        let tokens = try vit(["tokenize", "--json", "a photo of a cat."])
        #expect(tokens.status == 0 && tokens.stdout.contains("[49406,320,1125,539,320,2368,269,49407,0,"), "\(tokens.stdout)")
        let clip = Fixtures.url("CLIPTests").path
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let photos = root.appendingPathComponent("photos")
        try photoFolder(photos)
        let zeroshot = try vit(["zeroshot", "--model", clip, "--classes", "cat,dog", "--templates", "cifar10", "--json", photos.path])
        #expect(zeroshot.status == 0 && zeroshot.stdout.split(separator: "\n").count == 6, "\(zeroshot.stderr)")
        #expect(try vit(["zeroshot", "--model", clip, photos.path]).status == 2)

        // vit eval --zeroshot scores a labelled folder by its class folder names.
        let eval = try vit([
            "eval", "--zeroshot", "--model", clip, "--data", photos.path, "--templates", "cifar10", "--json", "-o", root.path
        ])
        #expect(eval.status == 0 && eval.stdout.contains("\"count\": 6"), "\(eval.stderr)")
    }

    /// `vit embed` with a CLIP folder writes open_clip's image and text embeddings (the fixture's, within 1e-4).
    @Test func embedWritesCLIPImageAndTextEmbeddings() throws {
        let fixtures = Fixtures.url("CLIPTests")
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let reference = try SafetensorsFile(contentsOf: fixtures.appendingPathComponent("openclip-reference.safetensors"))
        let texts = ["a photo of a cat.", "A photo of a DOG!", "a blurry photo of the automobile.", "it's   a  truck, isn't it?"]
        let textsOut = root.appendingPathComponent("texts.safetensors")
        let embedTexts = try vit(["embed", "--model", fixtures.path, "--stack", "-o", textsOut.path, "--text"] + texts)
        #expect(embedTexts.status == 0, "\(embedTexts.stderr)")
        let textFile = try SafetensorsFile(contentsOf: textsOut)
        #expect(textFile.metadata["texts"]?.contains("DOG!") == true && textFile.metadata["features"] == "text_embeds")
        let textEmbeddings = try textFile.tensor("embeddings").toArray(), expectedText = try reference.tensor("text_embeds").toArray()
        #expect(textEmbeddings.count == expectedText.count)
        #expect(zip(textEmbeddings, expectedText).map { abs($0 - $1) }.max() ?? 1 < 1e-4)

        let imagesOut = root.appendingPathComponent("images.safetensors")
        let images = ["input0.png", "input1.png"].map { fixtures.appendingPathComponent($0).path }
        let embedImages = try vit(["embed", "--model", fixtures.path, "--stack", "-o", imagesOut.path] + images)
        #expect(embedImages.status == 0, "\(embedImages.stderr)")
        let imageEmbeddings = try SafetensorsFile(contentsOf: imagesOut).tensor("embeddings").toArray()
        let expectedImages = try reference.tensor("image_embeds").toArray()
        #expect(imageEmbeddings.count == expectedImages.count)
        #expect(zip(imageEmbeddings, expectedImages).map { abs($0 - $1) }.max() ?? 1 < 1e-4)
        // Texts need a CLIP; images and texts together are refused.
        #expect(try vit(["embed", "-o", textsOut.path, "--text", "a cat"]).status != 0)
        #expect(try vit(["embed", "--model", fixtures.path, "-o", textsOut.path, images[0], "--text", "a cat"]).status == 2)
    }

    /// SIGTERM during training: the step finishes, a checkpoint is saved, the exit status is 143, and --resume
    /// continues from it.
    @Test func sigtermSavesAndExits143() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("photos"), run = root.appendingPathComponent("run")
        try photoFolder(data)
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = [
            "train", "--data", data.path, "-o", run.path, "--width", "32", "--depth", "1", "--heads", "2", "--batch-size", "2",
            "--epochs", "100000"
        ]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var seen = ""
        while !seen.contains("epoch 1/") {  // training has started: the signal asks for a stop, it does not end the load
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        kill(process.processIdentifier, SIGTERM)
        seen += String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 143, "\(seen)")
        #expect(seen.contains("terminated: saving a checkpoint"), "\(seen)")
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoint.safetensors").path))
        let resumed = try vit(["train", "--data", data.path, "-o", run.path, "--resume", "--max-steps", "1"])
        #expect(resumed.status == 0 && resumed.stderr.contains("resuming at epoch"), "\(resumed.stderr)")
    }

    @Test func validationIsHeldOutAndSurvivesResume() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("photos"), run = root.appendingPathComponent("run")
        try photoFolder(data)
        let tiny = ["--width", "32", "--depth", "1", "--heads", "2", "--batch-size", "2", "--epochs", "2"]
        let first = try vit(["train", "--data", data.path, "-o", run.path, "--val-split", "0.34", "--max-steps", "1"] + tiny)
        #expect(
            first.status == 0 && first.stderr.contains("4 training images") && first.stderr.contains("validation on 2 images"),
            "\(first.stderr)")
        let resumed = try vit(["train", "--data", data.path, "-o", run.path, "--resume", "--max-steps", "1"])
        #expect(resumed.status == 0 && resumed.stderr.contains("validation on 2 images"), "\(resumed.stderr)")
        let other = try vit(["train", "--data", data.path, "-o", run.path, "--resume", "--val-split", "0.5"])
        #expect(other.status == 2 && other.stderr.contains("--val-split"), "\(other.stderr)")
        // The data changed under the run: refused, not silently re-split.
        try FileManager.default.removeItem(at: data.appendingPathComponent("dog/2.png"))
        let changed = try vit(["train", "--data", data.path, "-o", run.path, "--resume"])
        #expect(changed.status == 2 && changed.stderr.contains("the data changed"), "\(changed.stderr)")
    }

    /// `vit shard` writes a photo folder as shards that `vit train` streams (and resumes); a damaged shard is
    /// reported and skipped, a run with more bad samples than `--max-bad-fraction` stops with one line, and a shard
    /// list naming a missing shard is refused naming it.
    @Test func shardsAreStreamedResumedAndTheirDamageReported() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let photos = root.appendingPathComponent("photos"), shards = root.appendingPathComponent("shards")
        for part in ["train", "test"] { try photoFolder(photos.appendingPathComponent(part)) }
        let written = try vit(["shard", photos.path, "-o", shards.path, "--max-count", "2"])
        #expect(written.status == 0 && written.stderr.contains("train: 6 images in 3 shards"), "\(written.stderr)")
        let run = root.appendingPathComponent("run")
        let tiny = ["--width", "32", "--depth", "1", "--heads", "2", "--batch-size", "2", "--epochs", "2", "--image-size", "16"]
        let first = try vit(
            ["train", "--data", shards.path, "-o", run.path, "--data-reading", "stream", "--workers", "2", "--max-steps", "2"] + tiny)
        #expect(
            first.status == 0 && first.stderr.contains("6 training images of 16x16, 2 classes, streamed from 3 shards"), "\(first.stderr)")
        let resumed = try vit(["train", "--data", shards.path, "-o", run.path, "--resume", "--data-reading", "stream"])
        #expect(resumed.status == 0 && resumed.stderr.contains("resuming at epoch 1, batch 3"), "\(resumed.stderr)")
        // Read in memory (auto: it fits), the same shards are said to be.
        let memory = try vit(["train", "--data", shards.path, "-o", root.appendingPathComponent("memory").path, "--max-steps", "1"] + tiny)
        #expect(memory.status == 0 && memory.stderr.contains("2 classes, in memory"), "\(memory.stderr)")
        // vit eval scores the test shards streamed as it scores them in memory.
        let scored = try ["stream", "memory"].map { reading in
            try vit(["eval", "--model", run.path, "--data", shards.path, "--data-reading", reading, "--precision", "fp32", "--json"])
        }
        #expect(scored.allSatisfy { $0.status == 0 } && scored[0].stdout == scored[1].stdout, "\(scored.map(\.stderr))")
        #expect(scored[0].stderr.contains("6 images, streamed from 3 shards"), "\(scored[0].stderr)")

        // The second training shard's first image corrupt (its bytes overwritten inside an intact archive).
        let second = shards.appendingPathComponent("train-000001.tar")
        var bytes = try Data(contentsOf: second)
        bytes.replaceSubrange(560..<620, with: Data(repeating: 0x55, count: 60))
        try bytes.write(to: second)
        let damaged = root.appendingPathComponent("damaged")
        let lenient = try vit(
            ["train", "--data", shards.path, "-o", damaged.path, "--data-reading", "stream", "--max-bad-fraction", "1"] + tiny)
        #expect(lenient.status == 0 && lenient.stderr.contains("train-000001.tar"), "\(lenient.stderr)")
        let strict = try vit(
            ["train", "--data", shards.path, "-o", root.appendingPathComponent("strict").path, "--data-reading", "stream"] + tiny)
        #expect(strict.status != 0 && strict.stderr.contains("--max-bad-fraction"), "\(strict.stderr)")
        let missing = try vit(
            ["train", "--data", shards.path + "/train-{000000..000004}.tar", "-o", root.appendingPathComponent("m").path] + tiny)
        #expect(missing.status == 2 && missing.stderr.contains("train-000003.tar: no such shard"), "\(missing.stderr)")
    }

    /// `vit train --task generation` trains an Image Transformer (bits/dim on the test part, resumable) and `vit eval
    /// --task generation --json` scores it; options of other tasks are refused.
    @Test func anImageTransformerTrainsResumesAndIsScored() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let photos = root.appendingPathComponent("photos"), run = root.appendingPathComponent("run")
        for part in ["train", "test"] { try photoFolder(photos.appendingPathComponent(part)) }
        let tiny = [
            "--image-size", "6", "--width", "16", "--depth", "1", "--heads", "2", "--batch-size", "2", "--epochs", "2", "--block-length",
            "32"
        ]
        let first = try vit(["train", "--task", "generation", "--data", photos.path, "-o", run.path, "--max-steps", "2"] + tiny)
        #expect(
            first.status == 0 && first.stderr.contains("6x6x3 = 108 sub-pixels, local 1-D attention in blocks of 32"), "\(first.stderr)")
        let resumed = try vit(["train", "--task", "generation", "--data", photos.path, "-o", run.path, "--resume"])
        #expect(resumed.status == 0 && resumed.stderr.contains("test") && resumed.stderr.contains("bits/dim"), "\(resumed.stderr)")
        let scored = try vit(["eval", "--task", "generation", "--model", run.path, "--data", photos.path, "--json", "--precision", "fp32"])
        let object = try JSONSerialization.jsonObject(with: Data(scored.stdout.utf8)) as? [String: Any]
        let bits = object?["bits_per_dim"] as? Double ?? 0
        #expect(scored.status == 0 && bits > 0 && bits < 9, "\(scored.stdout) \(scored.stderr)")
        let refused = try vit([
            "train", "--task", "generation", "--data", photos.path, "-o", root.appendingPathComponent("x").path, "--mixup", "0.5"
        ])
        #expect(refused.status == 2 && refused.stderr.contains("--mixup does not apply to --task generation"), "\(refused.stderr)")
    }

    @Test func aRunThatCannotFitInMemoryIsRefusedBeforeItStarts() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        try photoFolder(root.appendingPathComponent("photos"))
        let run = root.appendingPathComponent("run")
        let result = try vit(["train", "--data", root.appendingPathComponent("photos").path, "-o", run.path, "--image-size", "512"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("16385 tokens") && result.stderr.contains("GiB"), "\(result.stderr)")
        #expect(!result.stderr.contains("USAGE"), "a refusal is not a command-line mistake")
        #expect(!FileManager.default.fileExists(atPath: run.path))
    }

    @Test func exitStatusesOnGoodMixedAndBadInputs() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        try photoFolder(root.appendingPathComponent("photos"))
        let good = root.appendingPathComponent("photos/cat/0.png").path
        let bad = root.appendingPathComponent("notes.jpg")
        try Data("not an image".utf8).write(to: bad)
        let empty = root.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)

        for command in [
            ["predict"], ["embed", "-o", root.appendingPathComponent("e.safetensors").path],
            ["inspect", "attention", "-o", root.appendingPathComponent("inspect").path]
        ] {
            #expect(try vit(command + [good]).status == 0, "\(command) on a good image")
            let mixed = try vit(command + [good, bad.path])
            #expect(mixed.status == 1 && mixed.stderr.contains("notes.jpg"), "\(command) on a good and a bad image: \(mixed.stderr)")
            #expect(try vit(command + [bad.path]).status == 2, "\(command) on only a bad image")
            let none = try vit(command + [empty.path])
            #expect(none.status == 2 && none.stderr.contains("no images"), "\(command) on an empty folder: \(none.stderr)")
        }
        // A missing model: one line naming it, no usage text.
        let missing = try vit(["predict", "--model", root.appendingPathComponent("nope").path, good])
        #expect(missing.status == 2 && missing.stderr.contains("nope") && !missing.stderr.contains("USAGE"), "\(missing.stderr)")
        #expect(missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr)")
        // Missing data for eval, and a wrong command line (which does get the usage).
        let noData = try vit(["eval", "--data", root.appendingPathComponent("nothing").path])
        #expect(noData.status == 2 && noData.stderr.contains("nothing") && !noData.stderr.contains("USAGE"), "\(noData.stderr)")
        let wrong = try vit(["predict", "--top", "0", good])
        #expect(wrong.status == 2 && wrong.stderr.contains("--top"))
        #expect(try vit(["predict", "--no-such-option", good]).status == 2)
        #expect(try vit(["--help"]).status == 0)
    }

    @Test func theBuiltInModelServesEveryCommandThatRunsOne() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let cifar = root.appendingPathComponent("cifar")
        for name in ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"] {
            let folder = cifar.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try PNG.write(
                RGBImage(width: 40, height: 30, pixels: [UInt8](repeating: 90, count: 40 * 30 * 3)),
                to: folder.appendingPathComponent("0.png"))
        }
        let image = cifar.appendingPathComponent("cat/0.png").path
        #expect(try vit(["predict", image]).status == 0)
        let eval = try vit(["eval", "--data", cifar.path, "--json", "-o", root.path])
        #expect(eval.status == 0 && eval.stdout.contains("\"count\": 10"), "\(eval.stderr)")
        #expect(try vit(["embed", "-o", root.appendingPathComponent("f.safetensors").path, image]).status == 0)
        #expect(try vit(["inspect", "rollout", "-o", root.appendingPathComponent("r").path, image]).status == 0)
    }

    /// `--precision int8` runs the built-in model's 37 linear layers in int8 and ranks these photos as fp32 does, with
    /// probabilities close to fp32's; training, detection and generation refuse it in one line.
    @Test func int8IsAnInferencePrecision() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let repository = Fixtures.repository
        let photos = ["docs/chelsea.png", "Tests/CLIPTests/Fixtures/input0.png", "Tests/CLIPTests/Fixtures/input1.png"].map {
            repository.appendingPathComponent($0).path
        }
        func top(_ result: Result) -> [(String, Double)] {
            result.stdout.split(separator: "\n").compactMap { line in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    let best = (object["top"] as? [[String: Any]])?.first, let label = best["label"] as? String,
                    let probability = best["probability"] as? Double
                else { return nil }
                return (label, probability)
            }
        }
        let fp32 = try vit(["predict", "--precision", "fp32", "--json"] + photos)
        let int8 = try vit(["predict", "--precision", "int8", "--json"] + photos)
        #expect(int8.status == 0 && int8.stderr.contains("int8 products in 37 linear layers"), "\(int8.stderr)")
        let (exact, quantized) = (top(fp32), top(int8))
        #expect(exact.count == 3 && quantized.count == 3, "\(fp32.stdout)\n\(int8.stdout)")
        for ((label, p), (int8Label, q)) in zip(exact, quantized) {
            #expect(label == int8Label && abs(p - q) < 0.02, "fp32 \(label) \(p), int8 \(int8Label) \(q)")
        }
        let bench = try vit(["bench", "model", "--arch", "vit_cifar_patch4_32", "--precision", "int8", "--seconds", "0.1", "--json"])
        #expect(bench.status == 0 && bench.stdout.contains("\"precision\": \"int8\""), "\(bench.stderr)")
        for refused in [
            ["train", "--data", root.path, "-o", root.appendingPathComponent("run").path, "--precision", "int8"],
            ["bench", "model", "--train", "--precision", "int8"],
            ["generate", "--model", root.path, "--precision", "int8", "-o", root.appendingPathComponent("s.png").path]
        ] {
            let result = try vit(refused)
            #expect(
                result.status == 2 && result.stderr.contains("--precision int8 is for classifiers and CLIP"), "\(refused): \(result.stderr)"
            )
        }
    }

    /// The shared vocabulary: each command that takes a model, a batch or an output spells them the same way, and
    /// the old spellings are gone from the help.
    @Test func everyCommandSpeaksOneVocabulary() throws {
        let expected: [([String], [String])] = [
            (["predict"], ["--model", "--arch", "--heads", "--image-size", "--batch-size", "--json"]),
            (["eval"], ["--model", "--arch", "--heads", "--image-size", "--batch-size", "-o, --output", "--data", "--json", "--templates"]),
            (["embed"], ["--model", "--arch", "--heads", "--image-size", "--batch-size", "-o, --output", "--text"]),
            (["inspect", "attention"], ["--model", "--arch", "--heads", "--image-size", "-o, --output"]),
            (["inspect", "posemb"], ["--model", "-o, --output"]),
            (["train"], ["--data", "--arch", "--heads", "--image-size", "--batch-size", "-o, --output", "--seed"]),
            (["pretrain"], ["--data", "--arch", "--heads", "--image-size", "--batch-size", "-o, --output", "--seed", "--resume"]),
            (["inspect", "reconstruct"], ["--model", "--heads", "-o, --output", "--json", "--seed"]),
            (["train-clip"], ["--data", "--heads", "--image-size", "--batch-size", "-o, --output", "--seed", "--resume", "--templates"]),
            (["convert"], ["--arch", "--heads", "--image-size", "-o, --output"]),
            (["create"], ["--arch", "-o, --output", "--seed"]),
            (["bench", "model"], ["--arch", "--batch-size", "--json"])
        ]
        for (command, options) in expected {
            let help = try vit(command + ["--help"])
            #expect(help.status == 0)
            for option in options { #expect(help.stdout.contains(option), "vit \(command.joined(separator: " ")) lacks \(option)") }
            for old in ["--batch ", "--out ", "--preset ", "--per-head-count"] {
                #expect(!help.stdout.contains(old), "vit \(command.joined(separator: " ")) still shows \(old)")
            }
        }
        // Enumerated options list their choices; defaults are shown.
        let eval = try vit(["eval", "--help"]).stdout
        #expect(eval.contains("values: train, test") && eval.contains("values: bilinear, bicubic") && eval.contains("default: 256"))
        let train = try vit(["train", "--help"]).stdout
        #expect(train.contains("default: 128") && train.contains("default: 0.001"))
    }

    /// The training commands share their run options: the usage line shows -o as required, a batch larger than the
    /// data names --batch-size, and a run with no finished epoch has no curves to draw.
    @Test func theTrainingCommandsShareTheirRunOptions() throws {
        for command in ["train", "pretrain", "train-clip"] {
            let help = try vit([command, "--help"])
            #expect(help.stdout.contains("--output <output>") && !help.stdout.contains("[--output <output>]"), "\(command)")
            for option in ["--epochs", "--lr", "--min-lr", "--warmup", "--weight-decay", "--max-steps", "--precision", "--resume"] {
                #expect(help.stdout.contains(option), "vit \(command) lacks \(option)")
            }
        }
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("photos"), run = root.appendingPathComponent("run")
        try photoFolder(data)
        let missing = try vit(["train", "--data", data.path])
        #expect(missing.status == 2 && missing.stderr.contains("--output"), "\(missing.stderr)")
        let small = try vit(["predict", "--arch", "vit_small_patch16_224", data.appendingPathComponent("cat/0.png").path])
        #expect(small.status == 2 && small.stderr.contains("--arch vit_small_patch16_224 cannot apply"), "\(small.stderr)")
        let uneven = try vit([
            "train", "--data", data.path, "-o", run.path, "--batch-size", "4", "--max-steps", "1", "--width", "16", "--depth", "1",
            "--heads", "1"
        ])
        #expect(uneven.status == 0 && uneven.stderr.contains("note: 2 of the 6 images are left out of each epoch"), "\(uneven.stderr)")
        try FileManager.default.removeItem(at: run)
        let tooBig = try vit(["train", "--data", data.path, "-o", run.path, "--batch-size", "64"])
        #expect(tooBig.status == 2 && tooBig.stderr.contains("fewer than one batch of 64 (--batch-size)"), "\(tooBig.stderr)")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try Data().write(to: run.appendingPathComponent("metrics.jsonl"))
        let empty = try vit(["inspect", "curves", run.path, "-o", root.appendingPathComponent("figures").path])
        #expect(empty.status == 2 && empty.stderr.contains("no epoch has finished yet"), "\(empty.stderr)")
    }

    /// What a new user trips on gets one line that says what is wrong and what to do: a misspelt command, a missing
    /// image, a CLIP folder or a config.json given where a classifier's weights belong, a batch of CLIP images.
    @Test func aNewUsersMistakesGetOneClearLine() throws {
        let misspelt = try vit(["predct", "x.jpg"])
        #expect(
            misspelt.status == 2 && misspelt.stderr.contains("'predct' is not a vit command (did you mean 'predict'?)"),
            "\(misspelt.stderr)")
        let unknown = try vit(["frobnicate", "--help"])
        #expect(
            unknown.status == 2 && unknown.stdout.isEmpty && unknown.stderr.contains("'frobnicate' is not a vit command"),
            "\(unknown.stderr)")
        let missing = try vit(["predict", "nosuch.jpg"])
        #expect(missing.status == 2 && missing.stderr.split(separator: "\n").count == 1, "one line: \(missing.stderr)")
        let parser = try vit(["train", "--data"])
        #expect(parser.status == 2 && parser.stderr.hasPrefix("error: "), "one style of message: \(parser.stderr)")

        let clip = Fixtures.url("CLIPTests").path
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let photos = root.appendingPathComponent("photos")
        try photoFolder(photos)
        let image = photos.appendingPathComponent("cat/0.png").path
        let wrongCommand = try vit(["predict", "--model", clip, image])
        #expect(
            wrongCommand.status == 2 && wrongCommand.stderr.contains("is a CLIP model (open_clip)")
                && wrongCommand.stderr.contains("vit zeroshot"))
        let run = root.appendingPathComponent("run")
        #expect(
            try vit([
                "train", "--data", photos.path, "-o", run.path, "--max-steps", "1", "--batch-size", "2", "--width", "16", "--depth", "1",
                "--heads", "1"
            ])
            .status == 0)
        let config = try vit(["predict", "--model", run.appendingPathComponent("config.json").path, image])
        #expect(config.status == 2 && config.stderr.contains("is a JSON file, not weights"), "\(config.stderr)")

        // zeroshot batches as predict does, and takes --precision: bf16 keeps the fp32 ranking on these images.
        let fp32 = try vit(["zeroshot", "--model", clip, "--classes", "cat,dog", "--json", "--batch-size", "4", photos.path])
        let bf16 = try vit(["zeroshot", "--model", clip, "--classes", "cat,dog", "--json", "--precision", "bf16", photos.path])
        #expect(fp32.status == 0 && bf16.status == 0 && fp32.stdout.split(separator: "\n").count == 6, "\(fp32.stderr)")
        func topLabels(_ output: String) throws -> [String] {
            try output.split(separator: "\n").map { line in
                let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                return ((record?["top"] as? [[String: Any]])?.first?["label"] as? String) ?? ""
            }
        }
        #expect(try topLabels(fp32.stdout).count == 6 && topLabels(fp32.stdout) == topLabels(bf16.stdout))
        #expect(fp32.stderr.contains("precision: fp32") && bf16.stderr.contains("precision: bf16"))
    }
}
