import Foundation
import Tensors

/// The two parts of a data set that training and evaluation read.
public enum DataPart: String, Sendable, CaseIterable {
    case train, test
}

extension ImageDataset {
    /// Reads parts of the data set at `url`, recognising its layout:
    /// - an image folder (directory, `.tar.gz`, `.tgz` or `.tar`) laid out as `train/<class>/…` beside
    ///   `test/<class>/…` (or `val/`, `validation/`); a folder of only `<class>/…` is the whole set for either part;
    /// - a folder of IDX files (MNIST, Fashion-MNIST): `train-images-idx3-ubyte[.gz]` and `t10k-…`;
    /// - a folder of CIFAR binaries: `data_batch_N.bin` and `test_batch.bin` (CIFAR-10), `train.bin` and
    ///   `test.bin` (CIFAR-100, fine labels).
    /// A part the data set does not have is absent from the result. A folder of only `<class>/…` is one undivided
    /// set: it is the training part, or the test part when that alone is asked for (evaluating a labelled folder);
    /// it is never both, so training never validates on its own images.
    /// `sizing` says how images are brought to the model's size while they are loaded.
    public static func load(_ url: URL, parts: Set<DataPart>, sizing: ImageSizing = .native) throws -> [DataPart: ImageDataset] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        if files.contains(where: { $0.hasPrefix("train-images-idx3-ubyte") }) {
            return try idxFolder(url, files: files, parts: parts).mapValues { $0.sized(sizing) }
        }
        if files.contains(where: { $0.hasPrefix("data_batch_") || $0 == "train.bin" }) {
            return try cifarFolder(url, files: files, parts: parts).mapValues { $0.sized(sizing) }
        }
        let entries = try folderEntries(url)
        let topLevel = Set(
            entries.compactMap { entry -> String? in
                let parts = entry.path.split(separator: "/")
                return parts.count == 3 ? String(parts[0]) : nil
            })
        var result: [DataPart: ImageDataset] = [:]
        // One decision for every part, so that the training and test images end up the same size.
        let imageFiles = entries.filter { ["jpg", "jpeg", "png"].contains(($0.path as NSString).pathExtension.lowercased()) }
        let sizing: ImageSizing = try resolve(sizing, headersOf: imageFiles.map(\.data)).map { .resize($0) } ?? .native
        guard topLevel.contains("train") else {
            // root/<class>/<file>: one undivided set.
            guard let part: DataPart = parts.contains(.train) ? .train : parts.first else { return [:] }
            return [part: try imageFolder(entries: entries, root: url, subfolder: nil, sizing: sizing)]
        }
        if parts.contains(.train) { result[.train] = try imageFolder(entries: entries, root: url, subfolder: "train", sizing: sizing) }
        if parts.contains(.test), let name = ["test", "val", "validation"].first(where: topLevel.contains) {
            result[.test] = try imageFolder(entries: entries, root: url, subfolder: name, sizing: sizing)
        }
        return result
    }

    /// Images whose labels are not used (self-supervised pre-training): the training part of any data set `load`
    /// reads (a test part is never included), else every JPEG and PNG under `url` at any depth, labelled 0.
    public static func loadUnlabelled(_ url: URL, sizing: ImageSizing = .native) throws -> ImageDataset {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        let known = files.contains { $0.hasPrefix("train-images-idx3-ubyte") || $0.hasPrefix("data_batch_") || $0 == "train.bin" }
        let entries = known ? [] : try folderEntries(url)
        // A labelled layout only when every image sits in one: root/<class>/<file>, or train/<class>/<file>.
        let depths = entries.filter { ["jpg", "jpeg", "png"].contains(($0.path as NSString).pathExtension.lowercased()) }
            .map { $0.path.split(separator: "/") }
        let classFolders =
            !depths.isEmpty
            && (depths.allSatisfy { $0.count == 2 } || depths.contains { $0.count == 3 && $0[0] == "train" })
        if known || classFolders, let train = try load(url, parts: [.train], sizing: sizing)[.train] { return train }
        let imageFiles = entries.filter { ["jpg", "jpeg", "png"].contains(($0.path as NSString).pathExtension.lowercased()) }
        let sizing: ImageSizing = try resolve(sizing, headersOf: imageFiles.map(\.data)).map { .resize($0) } ?? .native
        return try imageFolder(entries: entries, root: url, subfolder: nil, sizing: sizing, labelled: false)
    }

    /// Fashion-MNIST's class names, in label order.
    public static let fashionMNISTClasses = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
        "Sneaker", "Bag", "Ankle boot"
    ]
    public static let cifar10Classes = [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
        "truck"
    ]

    private static func idxFolder(_ url: URL, files: [String], parts: Set<DataPart>) throws -> [DataPart: ImageDataset] {
        // Fashion-MNIST and MNIST share file names; the folder's name tells them apart.
        let classNames = url.path.lowercased().contains("fashion") ? fashionMNISTClasses : (0..<10).map(String.init)
        func file(_ stem: String) throws -> URL {
            guard let name = files.filter({ $0.hasPrefix(stem) }).sorted().first else {
                throw FileError(url.appendingPathComponent(stem), "no such file (an IDX folder needs it)")
            }
            return url.appendingPathComponent(name)
        }
        var result: [DataPart: ImageDataset] = [:]
        for part in parts {
            let stem = part == .train ? "train" : "t10k"
            result[part] = try idx(
                images: try file("\(stem)-images-idx3-ubyte"), labels: try file("\(stem)-labels-idx1-ubyte"),
                classNames: classNames)
        }
        return result
    }

    private static func cifarFolder(_ url: URL, files: [String], parts: Set<DataPart>) throws -> [DataPart: ImageDataset] {
        let hundred = files.contains("train.bin")
        let namesFile = url.appendingPathComponent(hundred ? "fine_label_names.txt" : "batches.meta.txt")
        let listed = (try? String(contentsOf: namesFile, encoding: .utf8))?
            .split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let classNames = listed ?? (hundred ? (0..<100).map(String.init) : cifar10Classes)
        var result: [DataPart: ImageDataset] = [:]
        for part in parts {
            let names =
                hundred
                ? [part == .train ? "train.bin" : "test.bin"]
                : (part == .train ? files.filter { $0.hasPrefix("data_batch_") }.sorted() : ["test_batch.bin"])
            result[part] = try cifarBinary(
                names.map { url.appendingPathComponent($0) }, classNames: classNames,
                labelBytes: hundred ? 2 : 1)
        }
        return result
    }
}
