import CLIP
import Checkpoints
import Datasets
import Foundation
import Generation
import Images
import NN
import Tensors
import Training
import ViT

/// One libFuzzer entry point for every harness; `SWIFTVIT_FUZZ_TARGET` names the one this process runs (one
/// process, one target, as libFuzzer expects). Each harness hands the fuzzer's bytes to a reader of untrusted input
/// the way a user's file would reach it; a thrown error is the expected outcome of nearly every input, and anything
/// else (a trap, a sanitizer report, a hang, memory past the limit) is a bug.
enum Harness: String, CaseIterable {
    /// JPEG and PNG decoding (libjpeg-turbo and libpng behind the C wrappers, Exif, the pixel limit) and the crop.
    case image
    /// A safetensors file, through the checkpoint loader to a model (with the fixture's config when one applies).
    case safetensors
    /// One .npy array.
    case npy
    /// An .npz archive (zip, CRC, declared sizes) through the checkpoint loader.
    case npz
    /// A PyTorch file (zip or legacy pickle) through the allow-list unpickler and the loader.
    case pth
    /// A config.json beside real weights, through the loader to a model.
    case config
    /// A gzip stream, then a tar archive (what a .tar.gz image folder goes through).
    case targz
    /// IDX image and label files, and CIFAR binary batches, as datasets.
    case idx
    /// A CLIP folder's configuration beside real weights: the first byte picks open_clip's open_clip_config.json or
    /// Hugging Face's config.json, the rest is the file; through `CLIPModel.load`.
    case clipconfig
    /// A ResNet's config.json beside real timm ResNet weights, through the loader to a model.
    case resnetconfig
    /// A run checkpoint (checkpoint.safetensors of a pre-training run), resumed on the run's own data and stepped once.
    case runstate
    /// Text through OpenAI's tokenizer (cleaning, the word pattern, BPE).
    case tokenizer
    /// A Hugging Face vocab.json and merges.txt (split at the first two NUL bytes), then text through the tokenizer
    /// they make.
    case vocabulary
    /// A JSONL captions file beside one image, loaded as train-clip loads it, each caption tokenized.
    case captions
    /// A WebDataset shard, streamed as vit train streams it: samples grouped by key, shuffled, labels read, images
    /// decoded, resized and batched (a bad sample skipped).
    case shard
    /// An Image Transformer folder's config.json beside real weights, through `ImageTransformerCheckpoint.load` and
    /// a forward pass.
    case imagetransformer

    static let current: Harness = {
        let name = ProcessInfo.processInfo.environment["SWIFTVIT_FUZZ_TARGET"] ?? ""
        guard let harness = Harness(rawValue: name) else {
            FileHandle.standardError.write(
                Data("set SWIFTVIT_FUZZ_TARGET to one of: \(allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            exit(2)
        }
        return harness
    }()

    /// A private folder for the harnesses that read files, and the fixture weights the config harness loads.
    static let folder: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvit-fuzz-\(getpid())")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    static let fixtureWeights: URL? = ProcessInfo.processInfo.environment["SWIFTVIT_FUZZ_WEIGHTS"].map(URL.init(fileURLWithPath:))
    /// The repository's Tests folder (fixtures of the CLIP, ResNet and caption harnesses).
    static let tests: URL? = ProcessInfo.processInfo.environment["SWIFTVIT_FUZZ_TESTS"].map(URL.init(fileURLWithPath:))

    /// A folder holding a copy of each fixture file (made once per process).
    static func folder(_ name: String, with files: [String: String]) -> URL {
        let folder = Self.folder.appendingPathComponent(name)
        if !FileManager.default.fileExists(atPath: folder.path) {
            try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for (target, source) in files {
                guard let tests else { fatalError("set SWIFTVIT_FUZZ_TESTS to the repository's Tests folder") }
                try! FileManager.default.copyItem(at: tests.appendingPathComponent(source), to: folder.appendingPathComponent(target))
            }
        }
        return folder
    }

    /// The run harness's data: 32 images of 8x8 (a resumed run must see the data it started on).
    static let runData: ImageDataset = {
        var state: UInt64 = 7
        let pixels = (0..<(32 * 8 * 8 * 3)).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        return ImageDataset(width: 8, height: 8, pixels: pixels, labels: [Int](repeating: 0, count: 32), classNames: ["a"])
    }()

    /// A pre-training run of one step on `runData`, stopped with a checkpoint: the run harness's seed.
    static func makeRunSeed(into corpus: URL) throws {
        let folder = Self.folder.appendingPathComponent("seed-run")
        var encoder = ViTConfig()
        (encoder.imageSize, encoder.patchSize, encoder.width, encoder.depth, encoder.heads, encoder.mlpRatio) = (8, 2, 16, 1, 2, 2)
        encoder.data.inputSize = [3, 8, 8]
        var config = MAEConfig(encoder: encoder)
        (config.decoderWidth, config.decoderDepth, config.decoderHeads) = (8, 1, 2)
        var options = PretrainingOptions()
        (options.epochs, options.batchSize) = (2, 8)
        let pretrainer = try Pretrainer(model: try MaskedAutoencoder(config), options: options, data: runData, folder: folder)
        pretrainer.stepLimit = 1
        _ = try pretrainer.run()
        try? FileManager.default.copyItem(
            at: folder.appendingPathComponent("checkpoint.safetensors"), to: corpus.appendingPathComponent("seed-run.safetensors"))
    }

    /// SWIFTVIT_FUZZ_VERBOSE=1: say what became of each input (to check that the seeds reach the deep paths).
    static let verbose = ProcessInfo.processInfo.environment["SWIFTVIT_FUZZ_VERBOSE"] == "1"

    /// OpenAI's tokenizer, loaded once.
    static let openAITokenizer = try! CLIPTokenizer.openAI()

    func file(_ name: String, _ data: Data) -> URL {
        let url = Self.folder.appendingPathComponent(name)
        try! data.write(to: url)
        return url
    }

    func run(_ data: Data) {
        // Small limits, so that a declared size the readers accept still fits the fuzzer's memory limit.
        DecodingLimit.maxPixels = 4_000_000
        switch self {
        case .image:
            guard let image = try? RGBImage(data: data, source: URL(fileURLWithPath: "input")) else { return }
            _ = EvalTransform(size: 32, cropPct: 0.875).crop(image)
        case .safetensors:
            let folder = Self.folder.appendingPathComponent("safetensors")
            try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try! data.write(to: folder.appendingPathComponent("model.safetensors"))
            _ = try? CheckpointLoader(heads: 4).load(folder)
        case .npy:
            _ = try? Npy.parse(data, name: "input.npy")
        case .npz:
            _ = try? CheckpointLoader(heads: 4).load(file("model.npz", data))
        case .pth:
            _ = try? CheckpointLoader(heads: 4).load(file("model.pth", data))
        case .config:
            let folder = Self.folder.appendingPathComponent("config")
            if !FileManager.default.fileExists(atPath: folder.appendingPathComponent("model.safetensors").path),
                let weights = Self.fixtureWeights
            {
                try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                try! FileManager.default.copyItem(at: weights, to: folder.appendingPathComponent("model.safetensors"))
            }
            try! data.write(to: folder.appendingPathComponent("config.json"))
            _ = try? CheckpointLoader().load(folder)
        case .targz:
            let source = URL(fileURLWithPath: "input.tar.gz")
            let tar = data.starts(with: [0x1F, 0x8B]) ? try? Gzip.decompress(data, source: source, limit: 64 << 20) : data
            if let tar { _ = try? Tar.files(tar, source: source) }
        case .idx:
            // The first byte splits the input: the images file, then the labels file (or one CIFAR batch).
            guard let split = data.first else { return }
            let body = data.dropFirst()
            let cut = body.startIndex + min(Int(split) * body.count / 255, body.count)
            let images = file("images-idx3-ubyte", Data(body[..<cut])), labels = file("labels-idx1-ubyte", Data(body[cut...]))
            _ = try? ImageDataset.idx(images: images, labels: labels, classNames: ["a", "b", "c"])
            _ = try? ImageDataset.cifarBinary([file("data_batch_1.bin", Data(body))], classNames: (0..<10).map(String.init))
        case .clipconfig:
            guard let mode = data.first else { return }
            let body = Data(data.dropFirst())
            if mode & 1 == 0 {
                let folder = Self.folder(
                    "openclip", with: ["open_clip_model.safetensors": "CLIPTests/Fixtures/open_clip_model.safetensors"])
                try! body.write(to: folder.appendingPathComponent("open_clip_config.json"))
                _ = try? CLIPModel.load(folder)
            } else {
                let folder = Self.folder("hfclip", with: ["model.safetensors": "CLIPTests/Fixtures/hf-clip/model.safetensors"])
                try! body.write(to: folder.appendingPathComponent("config.json"))
                _ = try? CLIPModel.load(folder)
            }
        case .resnetconfig:
            let folder = Self.folder(
                "resnet", with: ["model.safetensors": "ViTTests/Fixtures/timm-resnet-basic1111-w16-i32/model.safetensors"])
            try! data.write(to: folder.appendingPathComponent("config.json"))
            _ = try? CheckpointLoader().loadModel(folder)
        case .runstate:
            let folder = Self.folder.appendingPathComponent("run")
            try? FileManager.default.removeItem(at: folder)
            try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try! data.write(to: folder.appendingPathComponent("checkpoint.safetensors"))
            let resumed: Pretrainer
            do { resumed = try Pretrainer.resume(folder: folder, data: Self.runData) } catch {
                if Self.verbose { FileHandle.standardError.write(Data("refused: \(error)\n".utf8)) }
                return
            }
            resumed.stepLimit = 1
            let outcome = try? resumed.run()
            if Self.verbose { FileHandle.standardError.write(Data("resumed and stepped: \(String(describing: outcome))\n".utf8)) }
        case .tokenizer:
            _ = Self.openAITokenizer.tokenize(String(decoding: data, as: UTF8.self))
        case .vocabulary:
            let parts = data.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { return }
            let vocab = file("vocab.json", Data(parts[0])), merges = file("merges.txt", Data(parts[1]))
            guard let tokenizer = try? CLIPTokenizer(vocabulary: vocab, merges: merges) else { return }
            _ = tokenizer.tokenize(String(decoding: parts[2], as: UTF8.self))
        case .shard:
            let url = file("shard-000000.tar", data)
            var settings = StreamedImages.Settings()
            (settings.workers, settings.shuffleBuffer, settings.shuffleInitial, settings.maxBadFraction) = (1, 4, 2, 1)
            let stream = StreamedImages(
                .shards([url]), count: 16, classNames: ["a", "b", "c"], size: ImageSizing.Resize(size: 8), needs: .label,
                settings: settings)
            var options = TrainingLoader.Options(batchSize: 4, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
            options.dropLast = false
            let batches = stream.batches(options, epoch: 0, startBatch: 0)
            while (try? batches.next()) != nil {}
            batches.stop()
        case .imagetransformer:
            let folder = Self.folder(
                "imagetransformer", with: ["model.safetensors": "GenerationTests/Fixtures/image-transformer-grey-5x5-b8.safetensors"])
            try! data.write(to: folder.appendingPathComponent("config.json"))
            guard let model = try? ImageTransformerCheckpoint.load(folder) else { return }
            let length = model.config.sequenceLength
            _ = try? model([UInt8](repeating: 7, count: length), labels: model.config.classCount > 0 ? [0] : nil)
        case .captions:
            let folder = Self.folder("captions", with: ["a.png": "ImagesTests/Fixtures/decode/rgb.png"])
            let url = folder.appendingPathComponent("captions.jsonl")
            try! data.write(to: url)
            guard let pairs = try? ImageCaptions.load(url, sizing: .size(8)) else { return }
            for caption in pairs.captions.joined() { _ = Self.openAITokenizer.tokenize(caption) }
        }
    }
}

/// Once, before the corpus is read: the run harness writes its seed (a real checkpoint of its own data) into the
/// corpus folder `SWIFTVIT_FUZZ_CORPUS`.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> CInt {
    if Harness.current == .runstate, let corpus = ProcessInfo.processInfo.environment["SWIFTVIT_FUZZ_CORPUS"] {
        let url = URL(fileURLWithPath: corpus)
        if !FileManager.default.fileExists(atPath: url.appendingPathComponent("seed-run.safetensors").path) {
            do { try Harness.makeRunSeed(into: url) } catch { FileHandle.standardError.write(Data("run seed: \(error)\n".utf8)) }
        }
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let data = start.map { Data(bytes: $0, count: count) } ?? Data()
    Harness.current.run(data)
    return 0
}
