import ArgumentParser
import Checkpoints
import Hub
import Datasets
import Foundation
import Images
import Inference
import NN
import Tensors
import Training
import ViT

// The option names every command shares, defined once. One name means one thing everywhere:
//   --model       the checkpoint to run (folder or weights file); default: the built-in CIFAR-10 ViT
//   --arch        an architecture by preset (timm) name
//   --heads       the number of attention heads
//   --image-size  the model's input size in pixels (images are resized to it; position embeddings resampled)
//   --batch-size  images per batch
//   -o/--output   the file or folder the command writes
//   --data        labelled data (an image folder, a .tar.gz of one, CIFAR binaries, IDX files)
//   --seed        the seed of everything random
//   --json        machine-readable output on stdout
//   --max-image-pixels  the most pixels an image file may declare (a decompression-bomb guard, as Pillow's)

/// What a checkpoint may not say about its architecture, and the size to build it at.
struct ArchitectureOptions: ParsableArguments {
    @Option(help: "Architecture preset when the checkpoint has no config.json (e.g. vit_base_patch16_224).")
    var arch: String?

    @Option(help: "Number of attention heads, when neither a config.json nor a standard width (192/384/768/1024/1280) tells it.")
    var heads: Int?

    @Option(help: "Input size in pixels: images are resized to it, position embeddings resampled (default: the checkpoint's).")
    var imageSize: Int?

    func validate() throws {
        if let heads, heads < 1 { throw ValidationError("--heads must be at least 1") }
        if let imageSize, imageSize < 1 { throw ValidationError("--image-size must be at least 1") }
    }

    var loader: CheckpointLoader { CheckpointLoader(preset: arch, heads: heads, imageSize: imageSize) }
}

/// The decoding limit of every command that reads image files.
struct ImageLimitOptions: ParsableArguments {
    @Option(help: "Refuse image files that declare more pixels than this, before decoding them (Pillow's MAX_IMAGE_PIXELS).")
    var maxImagePixels = DecodingLimit.defaultMaxPixels

    func validate() throws {
        if maxImagePixels < 1 { throw ValidationError("--max-image-pixels must be at least 1") }
    }

    /// Sets the process-wide limit; call before reading images.
    func apply() { DecodingLimit.maxPixels = maxImagePixels }
}

/// Three numbers R,G,B (a normalisation mean or std).
struct ChannelTriple: ExpressibleByArgument {
    let values: [Float]
    init?(argument: String) {
        let values = argument.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard values.count == 3, values.allSatisfy(\.isFinite) else { return nil }
        self.values = values
    }
    static var defaultValueDescription: String { "R,G,B" }
}

extension Resampling.Filter: ExpressibleByArgument {}

/// `--precision` (the type is the engine's, decided once per command by `Precision.decide`).
extension Precision: ExpressibleByArgument {
    /// Decides an inference command's precision once and says it on stderr, with why.
    static func decideAndSay(_ asked: Precision?) -> Precision {
        let (chosen, why) = decide(asked: asked)
        printError("precision: \(chosen) (\(why))")
        return chosen
    }

    /// Refuses `--precision int8` where `what` has no int8 path: training (int8 is inference only), detection and
    /// generation.
    static func refuseInt8(_ asked: Precision?, in what: String) throws {
        guard asked == .int8 else { return }
        throw ValidationError(
            "--precision int8 is for classifiers and CLIP at inference (predict, eval, embed, zeroshot, serve, bench model); \(what) computes in fp32 or bf16"
        )
    }

    /// `model`'s linear layers to int8 when `self` is int8 (`Module.quantizeLinearWeights()`), with the line that
    /// says so.
    func quantize(_ model: Module) {
        guard quantizesLinearLayers else { return }
        let layers = model.quantizeLinearWeights()
        let between =
            Precision.int8OutputDType == .bfloat16 ? "attention in bf16, LayerNorm and the residual stream in fp32" : "the rest in fp32"
        printError(
            "precision: int8 products in \(layers) linear layers (weights per output channel, activations per sample, quantised as they come); \(between)"
        )
    }

    /// A training run's line on mixed precision (nothing for fp32), with the warning a CPU without bf16 kernels calls
    /// for.
    static func noteMixedPrecision(_ precision: Precision) {
        guard precision == .bf16 else { return }
        printError(
            "precision: bf16 matrix products, float32 weights, gradients and optimiser state"
                + (cpuHasBFloat16 ? "" : " (this CPU has no AVX512-BF16 or AMX: bf16 is emulated and slower than fp32)"))
    }
}
extension DataPart: ExpressibleByArgument {}
extension ViTConfig.Pooling: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension FineTuning.HeadInit: ExpressibleByArgument {}
extension Trainer.SavedWeights: ExpressibleByArgument {}

/// The checkpoint to run and how images are prepared for it (predict, eval, embed, inspect).
struct ModelOptions: ParsableArguments {
    @Option(
        help:
            "Checkpoint folder or weights file (timm / Hugging Face safetensors, JAX .npz, or a vit train folder); builtin:cifar10-vit is the CIFAR-10 ViT that ships with vit."
    )
    var model: String = BuiltInModel.name

    @OptionGroup var architecture: ArchitectureOptions

    @Option(help: "Resize the shorter side to size / crop-pct before the centre crop (default: the checkpoint's).")
    var cropPct: Float?

    @Option(help: "Resampling filter (default: the checkpoint's).")
    var interpolation: Resampling.Filter?

    @Option(help: "Normalisation mean, R,G,B (default: the checkpoint's).")
    var mean: ChannelTriple?

    @Option(help: "Normalisation std, R,G,B (default: the checkpoint's).")
    var std: ChannelTriple?

    @Option(
        help:
            "Compute precision (default: bf16 where the CPU has AVX512-BF16 or AMX, else fp32); int8 runs the linear layers as int8 products (dynamic quantisation, inference only)."
    )
    var precision: Precision?

    @OptionGroup var imageLimit: ImageLimitOptions

    func validate() throws {
        if let cropPct, !(cropPct > 0 && cropPct <= 1) { throw ValidationError("--crop-pct must be in (0, 1], got \(cropPct)") }
    }

    /// The model, checked to run `batchSize` images at once in the memory free now.
    func classifier(batchSize: Int = 1) throws -> Classifier {
        imageLimit.apply()
        let overrides = PreprocessingOverrides(cropPct: cropPct, interpolation: interpolation, mean: mean?.values, std: std?.values)
        // The weights are converted as they are read; the precision is said once the model has loaded (a model that
        // fails to load gets its one error line).
        let chosen = Precision.decide(asked: precision)
        var loader = architecture.loader
        loader.weightDType = chosen.precision.dtype
        let model = try loader.loadModel(try BuiltInModel.resolve(self.model))
        if batchSize > 1 { try MemoryEstimate.checkInference(model.architecture, batchSize: batchSize) }
        printError("precision: \(chosen.precision) (\(chosen.why))")
        if chosen.precision == .bf16, model.architecture.hasConvolutions {
            // bf16 covers the matrix products (attention, MLPs, heads); the convolutions always compute in float32.
            printError("precision: the convolutions run in fp32")
        }
        let classifier = Classifier(model: model, overrides: overrides, precision: chosen.precision)
        chosen.precision.quantize(model)
        return classifier
    }
}

/// The CIFAR-10 ViT that ships with SwiftViT (trained by `vit train`; see README), used when no --model is given.
/// SwiftPM copies it next to the executable as a resource bundle.
enum BuiltInModel {
    static let name = "builtin:cifar10-vit"

    /// `model` as a file URL: the built-in name maps to the resource folder, a hub name (`ORG/NAME`,
    /// `hf-hub:ORG/NAME[@REVISION]`) that is no path to its snapshot in the Hugging Face cache (`ModelLocation`).
    static func resolve(_ model: String) throws -> URL {
        guard model == name else { return try ModelLocation.resolve(model, client: hubClient()) }
        guard let url = Bundle.module.url(forResource: "cifar10-vit", withExtension: nil) else {
            throw CommandFailure(
                "the built-in model is missing beside this vit executable (its SwiftViT_vit.resources folder); pass --model")
        }
        return url
    }
}

/// The hub client of the command line: a download shows a bar in kB with its rate and time left.
func hubClient() -> HubClient {
    let client = HubClient()
    var current: (file: String, bar: ProgressBar)?
    client.progress = { file, done, total in
        if current?.file != file {
            printError("downloading \(file) from \(client.endpoint) into \(client.cache.root.path)")
            current = (file, ProgressBar(total: Int((total ?? done) / 1000), unit: "kB"))
        }
        guard let bar = current?.bar else { return }
        let kilobytes = Int(done / 1000)
        if kilobytes > bar.done { bar.advance(by: kilobytes - bar.done) }
    }
    return client
}

/// Image files named on the command line (files, and folders searched for .jpg/.jpeg/.png). Paths that do not exist
/// are reported; no image at all is an error (said once: when every path was missing, their lines said it all).
func imageFiles(_ paths: [String]) throws -> (files: [URL], missing: Int) {
    let (files, missing) = BatchLoader.imageFiles(paths)
    for error in missing { printError("error: \(error)") }
    guard !files.isEmpty else {
        if missing.count == paths.count { throw ExitCode(2) }
        throw CommandFailure("no images (.jpg, .jpeg, .png) in \(paths.joined(separator: ", "))")
    }
    return (files, missing.count)
}

/// The exit status of a command over many inputs: 0 when all were used, 1 when some failed (each was named on
/// stderr), 2 when none could be used.
func finish(failed: Int, of total: Int) throws {
    guard failed > 0 else { return }
    printError("\(failed) of \(total) images failed")
    throw ExitCode(failed == total ? 2 : 1)
}

/// How a training command reads --data: in memory or streamed (the same flags for vit train, pretrain and train-clip).
struct DataReadingOptions: ParsableArguments {
    @Option(
        help:
            "How --data is read: auto (in memory, decoded once, when the decoded images take at most half the available memory; else streamed), memory, or stream (decoded batch by batch: memory does not grow with the data set). WebDataset shards and image folders stream; CIFAR and IDX files are read in memory."
    )
    var dataReading: DataReading.Mode = .auto
    @Option(help: "Threads decoding each streamed batch (default: the number of cores).") var workers: Int?
    @Option(help: "Streamed shards: samples held in the shuffle buffer (webdataset's shuffle bufsize).") var shuffleBuffer =
        StreamedImages
        .Settings().shuffleBuffer
    @Option(help: "Streamed shards: samples in the buffer before the first is drawn (webdataset's shuffle initial).")
    var shuffleInitial = StreamedImages.Settings().shuffleInitial
    @Option(
        help: "A streamed run fails when more than this fraction of an epoch's samples cannot be used (each one is reported and skipped).")
    var maxBadFraction = StreamedImages.Settings().maxBadFraction

    func validate() throws {
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1") }
        if shuffleBuffer < 1 || shuffleInitial < 1 { throw ValidationError("--shuffle-buffer and --shuffle-initial must be at least 1") }
        if !(maxBadFraction >= 0 && maxBadFraction <= 1) { throw ValidationError("--max-bad-fraction must be in [0, 1]") }
    }

    /// The library's settings, reporting each skipped sample on stderr.
    var reading: DataReading {
        var reading = DataReading()
        reading.mode = dataReading
        if let workers { reading.stream.workers = workers }
        (reading.stream.shuffleBuffer, reading.stream.shuffleInitial) = (shuffleBuffer, shuffleInitial)
        reading.stream.maxBadFraction = maxBadFraction
        reading.log = { printError($0) }
        return reading
    }
}

extension DataReading.Mode: ExpressibleByArgument {}
