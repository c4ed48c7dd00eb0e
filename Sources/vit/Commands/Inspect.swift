import ArgumentParser
import Foundation
import Checkpoints
import Images
import Inference
import NN
import Plots
import Tensors
import Training
import ViT

/// Looking inside a ViT: pictures and the numbers behind them.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Patch grids, attention maps, attention rollout, mean attention distance, position-embedding similarity and training runs compared, as PNGs and JSON.",
        subcommands: [
            InspectPatches.self, InspectAttention.self, InspectRollout.self, InspectDistance.self, InspectPositions.self,
            InspectCurves.self, InspectReconstruct.self
        ]
    )
}

/// What every inspect subcommand shares: the model, how images are prepared, and where the files go.
struct InspectOptions: ParsableArguments {
    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .shortAndLong, help: "Output folder (created if needed).") var output: String

    var folder: URL { URL(fileURLWithPath: output) }

    func prepare() throws -> Classifier {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return try modelOptions.classifier()
    }

    /// Decoded and cropped images with their files, and how many of the paths failed (each reported on stderr).
    /// No image at all is an error.
    func images(_ paths: [String], _ classifier: Classifier) throws -> (
        images: [(file: URL, cropped: RGBImage, input: Tensor)], failed: Int
    ) {
        let (files, missing) = try imageFiles(paths)
        let loaded = files.compactMap { file -> (file: URL, cropped: RGBImage, input: Tensor)? in
            do {
                let image = try RGBImage(contentsOf: file)
                return (file, classifier.transform.crop(image), classifier.transform(image).unsqueeze(0))
            } catch {
                printError("error: \(error)")
                return nil
            }
        }
        let failed = missing + files.count - loaded.count
        if loaded.isEmpty { try finish(failed: failed, of: failed) }
        return (loaded, failed)
    }

    /// Each block's attention probabilities for one image [1, heads, T, T].
    func attentions(_ classifier: Classifier, _ input: Tensor) -> [Tensor] {
        Autograd.withNoGrad { classifier.vit?.forwardIntermediates(input, attentions: true).attentions ?? [] }
    }

    /// Attention figures read the class token's row: models without one are refused.
    func requireClassToken(_ config: ViTConfig) throws {
        guard config.classToken else { throw CommandFailure("this model has no class token to read attention from") }
    }

    /// The model as a ViT: attention, patches and position embeddings are a ViT's.
    func vit(_ classifier: Classifier) throws -> VisionTransformer {
        guard let vit = classifier.vit else {
            throw CommandFailure("\(modelOptions.model) is a convnet: this view looks at a ViT's patches, attention or position embeddings")
        }
        return vit
    }

    func write(json: Any, to name: String) throws {
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes]),
            to: folder.appendingPathComponent(name))
    }

    func write(png image: RGBImage, to name: String) throws {
        try PNG.write(image, to: folder.appendingPathComponent(name))
        printError("wrote \(folder.appendingPathComponent(name).path)")
    }

    /// Small inputs are enlarged for display (nearest neighbour) so a 32-pixel image is still visible.
    static func displayScale(_ size: Int) -> Int { max(1, 192 / size) }

    static func enlarged(_ image: RGBImage) -> RGBImage { Figures.enlarged(image, scale: displayScale(image.width)) }
}

func stem(_ url: URL) -> String { url.deletingPathExtension().lastPathComponent }

struct InspectPatches: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "patches",
        abstract: "The preprocessed image cut into its P x P patches, numbered in sequence order.")
    @OptionGroup var options: InspectOptions
    @Argument(help: "Image files or folders.") var images: [String]

    func run() throws {
        let classifier = try options.prepare()
        let config = try options.vit(classifier).config
        let (loaded, failed) = try options.images(images, classifier)
        for (file, cropped, _) in loaded {
            let grid = Figures.patches(cropped, patchSize: config.patchSize, scale: max(2, 256 / cropped.width))
            // The model's input beside its patches, at the grid's scale, so small images are legible too.
            var original = Canvas(
                width: cropped.width * max(1, grid.height / cropped.height), height: cropped.height * max(1, grid.height / cropped.height))
            original.draw(cropped, x: 0, y: 0, scale: max(1, grid.height / cropped.height))
            let figure = Figures.row(
                [
                    ("INPUT \(config.imageSize)X\(config.imageSize)", original.image),
                    ("\(config.patchCount) PATCHES OF \(config.patchSize)X\(config.patchSize), IN TOKEN ORDER", grid)
                ],
                title: "PATCHES")
            try options.write(png: figure, to: "\(stem(file))-patches.png")
            try options.write(
                json: [
                    "file": file.path, "patch_size": config.patchSize, "image_size": config.imageSize,
                    "grid": config.gridSize, "patches": config.patchCount
                ], to: "\(stem(file))-patches.json")
        }
        try finish(failed: failed, of: loaded.count + failed)
    }
}

struct InspectAttention: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract:
            "For each layer, the class token's attention to every patch (mean over heads, and per head with --per-head), overlaid on the image."
    )
    @OptionGroup var options: InspectOptions
    @Option(help: "Layers to show, e.g. 0,5,11 (default: all).") var layers: String?
    @Flag(help: "Also show each head separately.") var perHead = false
    @Argument(help: "Image files or folders.") var images: [String]

    func run() throws {
        let classifier = try options.prepare()
        let config = try options.vit(classifier).config
        try options.requireClassToken(config)
        let chosen =
            try layers.map { text in
                try text.split(separator: ",").map { part -> Int in
                    guard let l = Int(part.trimmingCharacters(in: .whitespaces)), (0..<config.depth).contains(l) else {
                        throw CommandFailure("--layers: \(part) is not a layer in 0..<\(config.depth) of this model")
                    }
                    return l
                }
            } ?? Array(0..<config.depth)
        let (loaded, failed) = try options.images(images, classifier)
        for (file, cropped, input) in loaded {
            let attentions = options.attentions(classifier, input)
            let shown = InspectOptions.enlarged(cropped)
            var panels: [(String, RGBImage)] = [], records: [[String: Any]] = []
            for layer in chosen {
                let headMaps = AttentionAnalysis.classAttention(attentions[layer], prefixTokens: config.prefixTokens)[0]
                let mean = (0..<headMaps[0].count).map { p in headMaps.reduce(0) { $0 + $1[p] } / Float(headMaps.count) }
                panels.append(("L\(layer) MEAN", Figures.overlay(shown, heat: mean, grid: config.gridSize)))
                if perHead {
                    for (h, values) in headMaps.enumerated() {
                        panels.append(("L\(layer) H\(h)", Figures.overlay(shown, heat: values, grid: config.gridSize)))
                    }
                }
                records.append(["layer": layer, "mean": mean, "heads": headMaps])
            }
            let figure = Figures.withColorBar(
                Figures.grid(panels, columns: perHead ? config.heads + 1 : min(chosen.count, 6), title: "CLASS TOKEN ATTENTION"),
                top: 24, low: "MIN", high: "MAX", caption: "ATTENTION, EACH PANEL")
            try options.write(png: figure, to: "\(stem(file))-attention.png")
            try options.write(json: ["file": file.path, "grid": config.gridSize, "layers": records], to: "\(stem(file))-attention.json")
        }
        try finish(failed: failed, of: loaded.count + failed)
    }
}

struct InspectRollout: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Attention rollout (Abnar & Zuidema 2020): the class token's attention carried through all layers, as a heat map.")
    @OptionGroup var options: InspectOptions
    @Argument(help: "Image files or folders.") var images: [String]

    func run() throws {
        let classifier = try options.prepare()
        let config = try options.vit(classifier).config
        try options.requireClassToken(config)
        let (loaded, failed) = try options.images(images, classifier)
        for (file, cropped, input) in loaded {
            let rollout = AttentionAnalysis.rollout(options.attentions(classifier, input), prefixTokens: config.prefixTokens)[0]
            let shown = InspectOptions.enlarged(cropped)
            let figure = Figures.withColorBar(
                Figures.grid(
                    [("IMAGE", shown), ("ROLLOUT", Figures.overlay(shown, heat: rollout, grid: config.gridSize))],
                    columns: 2, title: "ATTENTION ROLLOUT"),
                top: 24, low: "MIN", high: "MAX", caption: "ROLLOUT")
            try options.write(png: figure, to: "\(stem(file))-rollout.png")
            try options.write(json: ["file": file.path, "grid": config.gridSize, "rollout": rollout], to: "\(stem(file))-rollout.json")
        }
        try finish(failed: failed, of: loaded.count + failed)
    }
}

struct InspectDistance: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distance",
        abstract: "Mean attention distance in pixels per head and layer (ViT paper, Fig. 7), averaged over the images.")
    @OptionGroup var options: InspectOptions
    @Flag(help: "Print the JSON to stdout too.") var json = false
    @Argument(help: "Image files or folders.") var images: [String]

    func run() throws {
        let classifier = try options.prepare()
        let config = try options.vit(classifier).config
        let (loaded, failed) = try options.images(images, classifier)
        var sums = [[Float]](repeating: [Float](repeating: 0, count: config.heads), count: config.depth)
        for (_, _, input) in loaded {
            for (layer, attention) in options.attentions(classifier, input).enumerated() {
                let d = AttentionAnalysis.meanDistance(
                    attention, prefixTokens: config.prefixTokens,
                    gridSize: config.gridSize, patchSize: config.patchSize)
                for h in 0..<config.heads { sums[layer][h] += d[h] }
            }
        }
        let layers = sums.map { $0.map { $0 / Float(loaded.count) } }
        let record: [String: Any] = [
            "layers": layers, "patch_size": config.patchSize, "image_size": config.imageSize,
            "images": loaded.count
        ]
        try options.write(json: record, to: "distance.json")
        try options.write(
            png: Figures.scatter(
                layers, xLabel: "LAYER", yLabel: "MEAN ATTENTION DISTANCE (PX)",
                title: "MEAN ATTENTION DISTANCE PER HEAD"), to: "distance.png")
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self))
        }
        try finish(failed: failed, of: loaded.count + failed)
    }
}

struct InspectPositions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "posemb",
        abstract: "Cosine similarity of each patch's position embedding with every other (ViT paper, Fig. 7 centre).")
    @OptionGroup var options: InspectOptions

    func run() throws {
        let classifier = try options.prepare()
        let model = try options.vit(classifier), config = model.config
        guard let posEmbed = model.posEmbed else { throw CommandFailure("this model has no learned position embeddings") }
        let prefix = config.noEmbedClass ? 0 : config.prefixTokens
        let similarity = AttentionAnalysis.positionSimilarity(posEmbed, prefixTokens: prefix)
        let cell = max(2, 96 / config.gridSize)
        try options.write(png: Figures.similarityGrid(similarity, grid: config.gridSize, cell: cell), to: "posemb.png")
        try options.write(json: ["grid": config.gridSize, "similarity": similarity], to: "posemb.json")
    }
}

/// Runs side by side: each run's losses (and accuracy, where it has one) per epoch, from its metrics.jsonl, in one
/// figure. Takes the folders of `vit train`, `vit pretrain` and `vit train-clip` alike.
struct InspectCurves: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "curves",
        abstract:
            "The loss and accuracy curves of several runs in one figure (curves.png): train and validation of vit train, reconstruction (and HPM's ranking) loss of vit pretrain, contrastive loss and zero-shot top-1 of vit train-clip, loss and validation COCO AP of vit train --task detection."
    )
    @Option(name: .shortAndLong, help: "Output folder (created if needed).") var output: String
    @Argument(help: "Run folders (their metrics.jsonl); a run's name is its folder's.") var runs: [String]

    /// One run's curves: named series, one value per epoch (1-based; NaN where the run has none).
    struct Curves {
        var loss: [(name: String, values: [Int: Double])] = []
        var accuracy: [(name: String, values: [Int: Double])] = []
        /// A detection run: its second panel is COCO AP, not top-1 accuracy.
        var detection = false
    }

    /// Reads one run's metrics.jsonl, whichever command wrote it.
    static func curves(of path: String) throws -> Curves {
        let metrics = URL(fileURLWithPath: path).appendingPathComponent("metrics.jsonl")
        let lines: [MetricsFile.Line]
        do { lines = try MetricsFile.read(metrics) } catch { throw CommandFailure("\(error)") }
        guard !lines.isEmpty else {
            throw CommandFailure("\(metrics.path): no epoch has finished yet: nothing to draw")
        }
        let name = URL(fileURLWithPath: path).standardizedFileURL.lastPathComponent
        var curves = Curves()
        func add(
            _ panel: WritableKeyPath<Curves, [(name: String, values: [Int: Double])]>, _ series: String, _ epoch: Int, _ value: Double?
        ) {
            guard let value else { return }
            let label = "\(name) \(series)"
            if let i = curves[keyPath: panel].firstIndex(where: { $0.name == label }) {
                curves[keyPath: panel][i].values[epoch] = value
            } else {
                curves[keyPath: panel].append((label, [epoch: value]))
            }
        }
        for line in lines {
            switch line {
            case .train(let r):
                add(\.loss, "train", r.epoch, r.trainLoss)
                add(\.loss, "val", r.epoch, r.validationLoss)
                add(\.accuracy, "train", r.epoch, r.trainAccuracy)
                add(\.accuracy, "val", r.epoch, r.validationTop1)
            case .contrastive(let r):
                add(\.loss, "contrastive", r.epoch, r.loss)
                add(\.accuracy, "zero-shot", r.epoch, r.zeroShotTop1.map { $0 / 100 })
            case .pretrain(let r):
                add(\.loss, "reconstruction", r.epoch, r.loss)
                add(\.loss, "ranking", r.epoch, r.rankingLoss)
            case .detection(let r):
                add(\.loss, "train", r.epoch, r.loss)
                add(\.accuracy, "val AP", r.epoch, r.ap)
                add(\.accuracy, "val AP50", r.epoch, r.ap50)
                curves.detection = true
            case .generation(let r):
                // Bits per dimension is a loss: the lower the better.
                add(\.loss, "train bits/dim", r.epoch, r.trainBitsPerDim)
                add(\.loss, "test bits/dim", r.epoch, r.testBitsPerDim)
            }
        }
        return curves
    }

    func run() throws {
        let all = try runs.map(Self.curves(of:))
        let lastEpoch = all.flatMap { $0.loss + $0.accuracy }.flatMap(\.values.keys).max() ?? 1
        let epochs = Array(1...max(1, lastEpoch))
        func dense(_ series: [(name: String, values: [Int: Double])]) -> [(name: String, values: [Double])] {
            series.map { s in (s.name, epochs.map { s.values[$0] ?? .nan }) }
        }
        let loss = dense(all.flatMap(\.loss)), accuracy = dense(all.flatMap(\.accuracy))
        // Pre-training has no accuracy: its figure is the loss panel alone.
        let figure =
            accuracy.isEmpty
            ? TrainingFigures.lossCurves(epochs: epochs, series: loss)
            : TrainingFigures.curves(
                epochs: epochs, loss: loss, accuracy: accuracy,
                accuracyLabel: all.allSatisfy(\.detection)
                    ? "COCO AP" : all.contains(where: \.detection) ? "top-1 accuracy or COCO AP" : "top-1 accuracy")
        let folder = URL(fileURLWithPath: output)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try PNG.write(figure, to: folder.appendingPathComponent("curves.png"))
        printError("wrote \(folder.appendingPathComponent("curves.png").path)")
    }
}

struct InspectReconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconstruct",
        abstract:
            "A masked autoencoder's reconstructions: original | masked | reconstruction (visible patches pasted back), and for HPM the predicted beside the true per-patch loss.",
        discussion: """
            --model takes an MAE or HPM checkpoint: a vit pretrain run, facebookresearch/mae's checkpoint-N.pth \
            (with --heads and --decoder-heads where the widths are not standard), HPM's, or a Hugging Face \
            ViTMAEForPreTraining folder. Writes OUTPUT/reconstruction.png; --json prints the loss, each image's loss \
            and the mask (1 = removed) on stdout.
            """
    )
    @Option(help: "The masked autoencoder (see above).") var model: String
    @Option(help: "Encoder attention heads, when no config.json states them.") var heads: Int?
    @Option(help: "Decoder attention heads, when no config.json states them (default 16, as every published MAE).")
    var decoderHeads: Int?
    @Option(help: "Fraction of the patches removed (default: the model's).") var maskRatio: Float?
    @Option(
        help:
            "A safetensors file with a `noise` tensor [images, patches]: the patches with the smallest noise are kept (Hugging Face's noise argument)."
    )
    var noise: String?
    @Option(help: "Seed of the random mask, without --noise.") var seed: UInt64 = 0
    @Flag(help: "Print {\"loss\", \"loss_per_image\", \"mask\"} as JSON on stdout.") var json = false
    @Option(name: .shortAndLong, help: "Output folder (created if needed).") var output: String
    @OptionGroup var imageLimit: ImageLimitOptions
    @Argument(help: "Image files or folders.") var images: [String]

    func validate() throws {
        if let maskRatio, !(maskRatio >= 0 && maskRatio < 1) { throw ValidationError("--mask-ratio must be in [0, 1), got \(maskRatio)") }
        if let heads, heads < 1 { throw ValidationError("--heads must be at least 1") }
        if let decoderHeads, decoderHeads < 1 { throw ValidationError("--decoder-heads must be at least 1") }
    }

    func run() throws {
        imageLimit.apply()
        let folder = URL(fileURLWithPath: output)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var autoencoder = try MAECheckpoint.load(
            try BuiltInModel.resolve(model), heads: heads, decoderHeads: decoderHeads)
        if let maskRatio, maskRatio != autoencoder.config.maskRatio {
            var config = autoencoder.config
            config.maskRatio = maskRatio
            let resized = try Init.withoutDrawing { try MaskedAutoencoder(config) }
            try resized.load(stateDict: autoencoder.stateDict())
            autoencoder = resized
        }
        let config = autoencoder.config
        let data = config.encoder.data
        let transform = EvalTransform(
            size: config.encoder.imageSize, cropPct: data.cropPct, filter: data.interpolation == .bilinear ? .bilinear : .bicubic,
            mean: data.mean, std: data.std)
        let (files, missing) = try imageFiles(images)
        var inputs: [Tensor] = [], failed = missing
        for file in files {
            do { inputs.append(transform(try RGBImage(contentsOf: file)).unsqueeze(0)) } catch {
                printError("error: \(error)")
                failed += 1
            }
        }
        if inputs.isEmpty { try finish(failed: failed, of: failed) }
        let batch = Tensor.concat(inputs, axis: 0)  // [B, 3, H, W]
        let n = config.encoder.patchCount
        let mask: PatchMask
        if let noise {
            let url = URL(fileURLWithPath: noise)
            let tensor = try SafetensorsFile(contentsOf: url).tensor("noise")
            guard tensor.shape == [inputs.count, n] else {
                throw CommandFailure("\(noise): noise is \(tensor.shape), expected [\(inputs.count), \(n)] (images, patches)")
            }
            mask = PatchMask(noise: tensor, keep: config.keptPatches)
        } else {
            var rng = SeededGenerator(seed: seed)
            mask = PatchMask.random(batch: inputs.count, patches: n, keep: config.keptPatches, using: &rng)
        }
        let (figure, loss) = Autograd.withNoGrad {
            (
                Pretrainer.reconstructionFigure(
                    model: autoencoder, images: batch, mask: mask,
                    title: "\(config.lossPredictor ? "HPM" : "MAE") reconstructions, \(Int(config.maskRatio * 100))% masked"),
                autoencoder.reconstructionLoss(batch, prediction: autoencoder.forward(batch, mask: mask).prediction, mask: mask)
            )
        }
        let url = folder.appendingPathComponent("reconstruction.png")
        try PNG.write(figure, to: url)
        printError("wrote \(url.path); loss \(loss.loss.item()) over the removed patches")
        if json {
            let maskValues = mask.tensor.toArray()
            let record: [String: Any] = [
                "loss": Double(loss.loss.item()), "loss_per_image": loss.perImage.map(Double.init),
                "mask": (0..<inputs.count).map { b in (0..<n).map { Int(maskValues[b * n + $0]) } },
                "files": files.map(\.path)
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self))
        }
        try finish(failed: failed, of: files.count + missing)
    }
}
