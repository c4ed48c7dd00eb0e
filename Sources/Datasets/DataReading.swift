import Foundation
import Images
import Tensors

/// How a training command reads its data: in memory, decoded once (fastest, while it fits), or streamed, decoded
/// batch by batch (`StreamedImages`: memory does not grow with the number of images). WebDataset shards and image
/// folders (or archives) can be read either way; CIFAR binaries and IDX files are always read in memory.
public struct DataReading {
    public enum Mode: String, CaseIterable, Sendable {
        /// In memory when the decoded images take at most `memoryBudget` bytes, else streamed.
        case auto
        case memory
        case stream
    }

    public var mode = Mode.auto
    public var stream = StreamedImages.Settings()
    /// Decoded images up to this many bytes are read in memory by `auto` (default: half the available memory).
    public var memoryBudget: Int = (SystemMemory.availableBytes() ?? 8 << 30) / 2
    /// One line for each sample or shard skipped, and for each counting pass (called from loader threads too).
    public var log: @Sendable (String) -> Void = { _ in }

    public init() {}

    /// The images of a data set's parts, in memory or streamed.
    public enum Images {
        case memory(ImageDataset)
        case streamed(StreamedImages)

        public var images: any TrainingImages {
            switch self {
            case .memory(let dataset): return dataset
            case .streamed(let stream): return stream
            }
        }
    }

    /// The parts of the data set at `path` (see `ImageDataset.load`; also a WebDataset shard list or folder of
    /// shards, `WebDataset.shardParts`), each brought to one size as `sizing` says, read in memory or streamed as
    /// `mode` decides (the test part as the training part). `needs` is what every sample must carry besides its
    /// image: a label (classification), a caption (contrastive training; shards only) or nothing (pre-training:
    /// any folder of images, labels ignored).
    public func load(_ path: String, parts: Set<DataPart>, sizing: ImageSizing, needs: StreamedImages.Needs) throws -> [DataPart: Images] {
        if let shardParts = try WebDataset.shardParts(path) {
            return try loadShards(shardParts.filter { parts.contains($0.key) }, sizing: sizing, needs: needs, path: path)
        }
        if needs == .caption { throw StreamError("\(path): captioned images stream from WebDataset shards (.txt members) only") }
        let url = URL(fileURLWithPath: path)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        let binary = files.contains { $0.hasPrefix("train-images-idx3-ubyte") || $0.hasPrefix("data_batch_") || $0 == "train.bin" }
        if binary || mode == .memory { return try inMemory(url, parts: parts, sizing: sizing, needs: needs) }
        // An image folder or archive: its files listed (not decoded) to decide.
        let entries = try ImageDataset.folderEntries(url)
        let topLevel = Set(
            entries.compactMap { entry -> String? in
                let parts = entry.path.split(separator: "/")
                return parts.count == 3 ? String(parts[0]) : nil
            })
        var subfolders: [DataPart: String?] = [:]
        if needs == .nothing {
            subfolders[.train] = topLevel.contains("train") ? "train" : nil
        } else if topLevel.contains("train") {
            if parts.contains(.train) { subfolders[.train] = "train" }
            if parts.contains(.test), let name = ["test", "val", "validation"].first(where: topLevel.contains) { subfolders[.test] = name }
        } else if let part: DataPart = parts.contains(.train) ? .train : parts.first {
            subfolders[part] = .some(nil)
        }
        var listed: [DataPart: (classNames: [String], files: [(className: String, path: String, data: () throws -> Data)])] = [:]
        for (part, subfolder) in subfolders {
            listed[part] = try ImageDataset.labelledFiles(entries: entries, root: url, subfolder: subfolder, labelled: needs == .label)
        }
        let all = listed.values.flatMap(\.files)
        let resize = try ImageDataset.resolve(sizing, headersOf: all.map(\.data))
        // Without a resize the images keep their own (uniform, square) size: the first file's header tells it.
        let side = resize?.size ?? all.first.flatMap { try? $0.data() }.flatMap(ImageHeader.size).map { max($0.width, $0.height) } ?? 0
        if mode == .auto {
            let decoded = all.count * side * side * 3
            log(Self.decision(images: all.count, side: side, decoded: decoded, budget: memoryBudget))
            if decoded <= memoryBudget { return try inMemory(url, parts: parts, sizing: sizing, needs: needs) }
        }
        guard let resize = resize ?? (side > 0 ? ImageSizing.Resize(size: side) : nil) else {
            throw StreamError("\(path): none of its images could be read")
        }
        let classNames = listed[.train]?.classNames ?? listed.values.first?.classNames ?? []
        let classIndex = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($1, $0) })
        var result: [DataPart: Images] = [:]
        for (part, (names, files)) in listed {
            guard names == classNames else {
                throw StreamError("\(path): the test part has classes \(names), the training part \(classNames)")
            }
            let encoded = files.map { file in
                StreamedImages.EncodedFile(
                    path: file.path, location: url.appendingPathComponent(file.path).path, label: classIndex[file.className] ?? 0,
                    read: file.data)
            }
            result[part] = .streamed(
                self.streamed(.files(encoded), count: encoded.count, classNames: classNames, resize: resize, needs: needs))
        }
        return result
    }

    private func streamed(
        _ source: StreamedImages.Source, count: Int, classNames: [String], resize: ImageSizing.Resize, needs: StreamedImages.Needs
    ) -> StreamedImages {
        let images = StreamedImages(source, count: count, classNames: classNames, size: resize, needs: needs, settings: stream)
        images.onProblem = log
        return images
    }

    /// Today's in-memory path: `ImageDataset.load`, or `loadUnlabelled` for images whose labels are not used.
    private func inMemory(_ url: URL, parts: Set<DataPart>, sizing: ImageSizing, needs: StreamedImages.Needs) throws -> [DataPart: Images] {
        if needs == .nothing { return [.train: .memory(try ImageDataset.loadUnlabelled(url, sizing: sizing))] }
        return try ImageDataset.load(url, parts: parts, sizing: sizing).mapValues { .memory($0) }
    }

    /// WebDataset shards by part: counted (`sizes.json`, `_info.json`, else a pass over them), sized from the first
    /// samples' headers unless `sizing` gives a size, streamed, or decoded into memory when `mode` says so.
    private func loadShards(_ parts: [DataPart: [URL]], sizing: ImageSizing, needs: StreamedImages.Needs, path: String) throws
        -> [DataPart: Images]
    {
        guard let trainShards = parts[.train] ?? parts[.test], let first = trainShards.first else {
            throw StreamError("\(path) names no shards of the part asked for")
        }
        let folder = first.deletingLastPathComponent()
        var counted: [DataPart: (count: Int, largestLabel: Int)] = [:]
        for (part, shards) in parts {
            if let count = WebDataset.sampleCount(in: shards[0].deletingLastPathComponent(), shards: shards) {
                counted[part] = (count, -1)
                continue
            }
            log("counting the samples of \(shards.count) shards (no sizes.json or _info.json beside them) ...")
            let (count, largest, problems) = WebDataset.countSamples(shards)
            problems.forEach(log)
            counted[part] = (count, largest)
        }
        var classNames = WebDataset.classNames(in: folder) ?? []
        if classNames.isEmpty && needs == .label {
            var largest = counted.values.map(\.largestLabel).max() ?? -1
            if largest < 0 {
                // Counted from an index: the labels still have to be read to know the classes.
                log("reading the labels of \(trainShards.count) shards (no class names in _info.json) ...")
                largest = WebDataset.countSamples(trainShards).largestLabel
            }
            guard largest >= 0 else { throw StreamError("\(path): no sample has a .cls label") }
            classNames = (0...largest).map(String.init)
        }
        let resize = try shardResize(sizing, first: first)
        var result: [DataPart: Images] = [:]
        var decodedBytes = 0
        for (part, shards) in parts {
            let count = counted[part]?.count ?? 0
            guard count > 0 else { throw StreamError("\(path): the \(part.rawValue) shards hold no samples") }
            result[part] = .streamed(self.streamed(.shards(shards), count: count, classNames: classNames, resize: resize, needs: needs))
            decodedBytes += count * resize.size * resize.size * 3
        }
        if mode == .auto && needs != .caption {
            let images = result.values.reduce(0) { $0 + $1.images.count }
            log(Self.decision(images: images, side: resize.size, decoded: decodedBytes, budget: memoryBudget))
        }
        if needs != .caption, mode == .memory || (mode == .auto && decodedBytes <= memoryBudget) {
            for (part, images) in result {
                guard case .streamed(let stream) = images else { continue }
                let dataset = try stream.loadIntoMemory()
                for failure in dataset.failures { log("skipped: \(failure)") }
                result[part] = .memory(dataset)
            }
        }
        return result
    }

    /// Why `auto` reads a set in memory or streams it, in a line.
    static func decision(images: Int, side: Int, decoded: Int, budget: Int) -> String {
        let gib = { (bytes: Int) in String(format: "%.1f GiB", Double(bytes) / 1_073_741_824) }
        return decoded <= budget
            ? "\(images) images of \(side) px decode to \(gib(decoded)), within half the available memory (\(gib(budget))): read in memory"
            : "\(images) images of \(side) px would decode to \(gib(decoded)), more than half the available memory (\(gib(budget))): streamed"
    }

    /// The size shards are brought to: `sizing`'s, or the first samples' own when they share one square size (else
    /// the fallback).
    private func shardResize(_ sizing: ImageSizing, first shard: URL) throws -> ImageSizing.Resize {
        if case .resize(let resize) = sizing { return resize }
        var sizes = Set<Int>()
        if let reader = try? WebDataset.SampleReader(shard) {
            for _ in 0..<32 {
                guard let sample = try? reader.next() else { break }
                if let (data, _) = sample.image, let (w, h) = ImageHeader.size(of: data) { sizes.insert(w == h ? w : -1) }
            }
        }
        if sizes.count == 1, let side = sizes.first, side > 0 { return ImageSizing.Resize(size: side) }
        if case .nativeIfUniform(let fallback) = sizing { return ImageSizing.Resize(size: fallback) }
        throw StreamError("\(shard.path): the images are not of one square size: give an image size")
    }
}
