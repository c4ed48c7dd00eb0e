import Checkpoints
import Datasets
import Foundation
import Images
import Tensors
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
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let data = start.map { Data(bytes: $0, count: count) } ?? Data()
    Harness.current.run(data)
    return 0
}
