import Foundation
import Images
import Tensors

/// A labelled image set held in memory as 8-bit RGB (small images are decoded once): N images of one size,
/// interleaved rows (HWC), N labels, and the class names.
public struct ImageDataset: Sendable {
    public let width: Int
    public let height: Int
    /// N · height · width · 3 bytes.
    public private(set) var pixels: [UInt8]
    public private(set) var labels: [Int]
    public let classNames: [String]
    /// Where each image came from: its path inside an image folder, or `<file>#<record>` for CIFAR and IDX files.
    /// A validation split is saved as these names, so that a resumed run can tell whether the data changed.
    public private(set) var sources: [String]
    /// Files that could not be read while loading, with why (skipped, not fatal).
    public var failures: [FileError] = []

    public init(width: Int, height: Int, pixels: [UInt8], labels: [Int], classNames: [String], sources: [String]? = nil) {
        precondition(
            pixels.count == labels.count * width * height * 3, "\(pixels.count) bytes for \(labels.count) images of \(width)x\(height)")
        precondition(labels.allSatisfy { $0 >= 0 && $0 < classNames.count }, "a label outside 0..<\(classNames.count)")
        precondition(sources == nil || sources!.count == labels.count, "one source name per image")
        self.width = width
        self.height = height
        self.pixels = pixels
        self.labels = labels
        self.classNames = classNames
        self.sources = sources ?? labels.indices.map { "#\($0)" }
    }

    public var count: Int { labels.count }
    var imageBytes: Int { width * height * 3 }

    /// Image i as an RGBImage.
    public func image(_ i: Int) -> RGBImage {
        RGBImage(width: width, height: height, pixels: Array(pixels[(i * imageBytes)..<((i + 1) * imageBytes)]))
    }

    /// The images at `indices`, in that order.
    public func subset(_ indices: [Int]) -> ImageDataset {
        var bytes = [UInt8]()
        bytes.reserveCapacity(indices.count * imageBytes)
        for i in indices { bytes += pixels[(i * imageBytes)..<((i + 1) * imageBytes)] }
        return ImageDataset(
            width: width, height: height, pixels: bytes, labels: indices.map { labels[$0] }, classNames: classNames,
            sources: indices.map { sources[$0] })
    }

    /// Every image brought to `size` x `size` as timm's evaluation transform does (shorter side to size / cropPct
    /// with Pillow-exact resampling, centre crop), on all cores. Unchanged when the images already have that size
    /// and nothing is cropped.
    public func resized(to sizing: ImageSizing.Resize) -> ImageDataset {
        guard !(width == sizing.size && height == sizing.size && sizing.cropPct == 1) else { return self }
        let out = sizing.size * sizing.size * 3
        var bytes = [UInt8](repeating: 0, count: count * out)
        let chunks = Swift.max(1, Swift.min(ProcessInfo.processInfo.activeProcessorCount, count))
        bytes.withUnsafeMutableBufferPointer { destination in
            let target = UncheckedSendable(destination)
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                for i in (chunk * count / chunks)..<((chunk + 1) * count / chunks) {
                    let image = sizing.apply(self.image(i))
                    image.pixels.withUnsafeBufferPointer { source in
                        (target.value.baseAddress! + i * out).update(from: source.baseAddress!, count: out)
                    }
                }
            }
        }
        var result = ImageDataset(
            width: sizing.size, height: sizing.size, pixels: bytes, labels: labels,
            classNames: classNames, sources: sources)
        result.failures = failures
        return result
    }

    /// A seeded, stratified split: `fraction` of each class (rounded) goes to the second set. The two sets never
    /// share an image; the same data, fraction and seed always give the same split.
    public func stratifiedSplit(validationFraction fraction: Double, seed: UInt64) -> (train: ImageDataset, validation: ImageDataset) {
        precondition(fraction >= 0 && fraction < 1, "validation fraction \(fraction) outside [0, 1)")
        var rng = SeededGenerator(seed: seed)
        var train: [Int] = [], validation: [Int] = []
        for c in classNames.indices {
            var members = labels.indices.filter { labels[$0] == c }
            members.shuffle(using: &rng)
            let held = Int((Double(members.count) * fraction).rounded())
            validation += members.prefix(held)
            train += members.dropFirst(held)
        }
        return (subset(train.sorted()), subset(validation.sorted()))
    }
}

extension ImageDataset {
    /// An image folder, `root/<class>/<image>` (classes sorted by name, as torchvision's ImageFolder), either a
    /// directory or a `.tar.gz`/`.tgz`/`.tar` of one. `subfolder` picks a part inside it (`train`, `test`).
    /// `sizing` says how images are brought to one size. Unreadable images are listed in `failures` and skipped.
    public static func imageFolder(_ url: URL, subfolder: String? = nil, sizing: ImageSizing = .native) throws -> ImageDataset {
        try imageFolder(entries: try folderEntries(url), root: url, subfolder: subfolder, sizing: sizing)
    }

    /// The files of an image folder on disk or in a tar archive, by relative path, read lazily.
    static func folderEntries(_ url: URL) throws -> [(path: String, data: () throws -> Data)] {
        var entries: [(path: String, data: () throws -> Data)] = []
        let name = url.lastPathComponent
        if name.hasSuffix(".tar.gz") || name.hasSuffix(".tgz") || name.hasSuffix(".tar") {
            guard let raw = try? Data(contentsOf: url) else {
                throw FileError(url, FileManager.default.fileExists(atPath: url.path) ? "cannot be read" : "no such file")
            }
            let tar = name.hasSuffix(".tar") ? raw : try Gzip.decompress(raw, source: url)
            entries = try Tar.files(tar, source: url).map { file in (file.path, { file.contents }) }
        } else {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw FileError(
                    url,
                    FileManager.default.fileExists(atPath: url.path)
                        ? "is not an image folder (root/<class>/<image>) or a .tar.gz of one" : "no such file or folder")
            }
            for relative in Self.walk(url) {
                let file = url.appendingPathComponent(relative)
                entries.append((relative, { try Data(contentsOf: file) }))
            }
        }
        return entries.map { entry in (entry.path.hasPrefix("./") ? String(entry.path.dropFirst(2)) : entry.path, entry.data) }
    }

    /// The paths under `root`, relative to it, folders before their contents. Links to folders are followed (a data
    /// set assembled from links: `train/` here, `test/` a link to another copy), except a link back to a folder it
    /// is inside (a loop).
    static func walk(_ root: URL) -> [String] {
        var paths: [String] = [], ancestors: Set<String> = []
        func visit(_ folder: URL, _ prefix: String) {
            let real = folder.resolvingSymlinksInPath().path
            guard ancestors.insert(real).inserted else { return }
            defer { ancestors.remove(real) }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            for name in names.sorted() {
                let path = prefix.isEmpty ? name : prefix + "/" + name
                paths.append(path)
                var isDirectory: ObjCBool = false
                let child = folder.appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: child.path, isDirectory: &isDirectory), isDirectory.boolValue {
                    visit(child, path)
                }
            }
        }
        visit(root, "")
        return paths
    }

    /// The image files under `subfolder`/<class>/ among `entries` (unlabelled: any depth, all of one class), sorted by
    /// class and path, with the sorted class names (torchvision's ImageFolder order).
    static func labelledFiles(
        entries: [(path: String, data: () throws -> Data)], root url: URL, subfolder: String?, labelled: Bool = true
    ) throws -> (classNames: [String], files: [(className: String, path: String, data: () throws -> Data)]) {
        let prefix = subfolder.map { $0.hasSuffix("/") ? $0 : $0 + "/" } ?? ""
        let images = entries.compactMap { entry -> (className: String, path: String, data: () throws -> Data)? in
            let path = entry.path
            guard path.hasPrefix(prefix) else { return nil }
            let parts = path.dropFirst(prefix.count).split(separator: "/")
            let ext = (parts.last.map(String.init) ?? "").split(separator: ".").last?.lowercased() ?? ""
            guard labelled ? parts.count == 2 : !parts.isEmpty, ["jpg", "jpeg", "png"].contains(ext) else { return nil }
            return (labelled ? String(parts[0]) : "unlabelled", path, entry.data)
        }.sorted { ($0.className, $0.path) < ($1.className, $1.path) }
        guard !images.isEmpty else {
            throw FileError(url, labelled ? "holds no images as \(prefix)<class>/<file>.jpg|png" : "holds no .jpg or .png images")
        }
        return (Array(Set(images.map(\.className))).sorted(), images)
    }

    /// The images under `subfolder`/<class>/ among `entries`, decoded (and resized, as `sizing` says) on all cores.
    static func imageFolder(
        entries: [(path: String, data: () throws -> Data)], root url: URL,
        subfolder: String?, sizing: ImageSizing, labelled: Bool = true
    ) throws -> ImageDataset {
        let (classNames, images) = try labelledFiles(entries: entries, root: url, subfolder: subfolder, labelled: labelled)
        let classIndex = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($1, $0) })
        let resize = try resolve(sizing, headersOf: images.map(\.data))
        // Decode in one chunk per core; each chunk keeps its results in order.
        let chunks = max(1, min(ProcessInfo.processInfo.activeProcessorCount, images.count / 64))
        var decoded = [[Result<RGBImage, FileError>]](repeating: [], count: chunks)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let range = (chunk * images.count / chunks)..<((chunk + 1) * images.count / chunks)
            let results = range.map { i -> Result<RGBImage, FileError> in
                let location = url.appendingPathComponent(images[i].path)
                do {
                    let image = try RGBImage(data: try images[i].data(), source: location)
                    return .success(resize?.apply(image) ?? image)
                } catch let error as FileError {
                    return .failure(error)
                } catch {
                    return .failure(FileError(location, "\(error)"))
                }
            }
            lock.withLock { decoded[chunk] = results }
        }
        var pixels: [UInt8] = [], labels: [Int] = [], sources: [String] = [], failures: [FileError] = []
        var size: (Int, Int)?
        for (entry, result) in zip(images, decoded.joined()) {
            switch result {
            case .failure(let error): failures.append(error)
            case .success(let image):
                if size == nil { size = (image.width, image.height) }
                guard size! == (image.width, image.height) else {
                    failures.append(
                        FileError(
                            url.appendingPathComponent(entry.path),
                            "is \(image.width)x\(image.height), the others \(size!.0)x\(size!.1) (give an image size to resize them all)"))
                    continue
                }
                pixels += image.pixels
                labels.append(classIndex[entry.className]!)
                sources.append(entry.path)
            }
        }
        guard let (width, height) = size else { throw FileError(url, "none of its \(images.count) images could be read") }
        var dataset = ImageDataset(
            width: width, height: height, pixels: pixels, labels: labels, classNames: classNames,
            sources: sources)
        dataset.failures = failures
        return dataset
    }

    /// The resize each image gets while decoding, or nil to keep it as it is. `nativeIfUniform` reads the images'
    /// headers (not their pixels) to decide.
    static func resolve(_ sizing: ImageSizing, headersOf files: [() throws -> Data]) throws -> ImageSizing.Resize? {
        switch sizing {
        case .native: return nil
        case .resize(let resize): return resize
        case .nativeIfUniform(let fallback):
            var sizes = Set<Int>()
            for file in files {
                // Unreadable files are reported when decoded; they do not decide the size.
                guard let data = try? file(), let (w, h) = ImageHeader.size(of: data) else { continue }
                sizes.insert(w == h ? w : -1)
                if sizes.count > 1 { break }
            }
            if sizes.count == 1, let side = sizes.first, side > 0 { return nil }
            return ImageSizing.Resize(size: fallback)
        }
    }

    /// `self` brought to one size as `sizing` says (for data that is decoded whole: CIFAR and IDX files).
    func sized(_ sizing: ImageSizing) -> ImageDataset {
        switch sizing {
        case .native: return self
        case .resize(let resize): return resized(to: resize)
        case .nativeIfUniform(let fallback):
            return width == height ? self : resized(to: ImageSizing.Resize(size: fallback))
        }
    }

    /// The CIFAR-10/100 binary format: records of label byte(s) then 3072 planar bytes (R, G, B planes of 32x32).
    /// CIFAR-100 records carry a coarse and a fine label; `fineLabels` picks the fine one.
    public static func cifarBinary(_ files: [URL], classNames: [String], labelBytes: Int = 1) throws -> ImageDataset {
        let record = labelBytes + 3072
        var pixels: [UInt8] = [], labels: [Int] = [], sources: [String] = []
        for url in files {
            guard let data = try? Data(contentsOf: url) else {
                throw FileError(url, FileManager.default.fileExists(atPath: url.path) ? "cannot be read" : "no such file")
            }
            guard data.count % record == 0 else {
                throw FileError(url, "has \(data.count) bytes, not a whole number of \(record)-byte CIFAR records: truncated?")
            }
            let bytes = [UInt8](data)
            for r in 0..<(bytes.count / record) {
                let base = r * record
                let label = Int(bytes[base + labelBytes - 1])
                guard label < classNames.count else {
                    throw FileError(url, "record \(r) has label \(label), beyond \(classNames.count) classes")
                }
                labels.append(label)
                sources.append("\(url.lastPathComponent)#\(r)")
                for i in 0..<1024 {  // planar -> interleaved
                    pixels += [bytes[base + labelBytes + i], bytes[base + labelBytes + 1024 + i], bytes[base + labelBytes + 2048 + i]]
                }
            }
        }
        return ImageDataset(width: 32, height: 32, pixels: pixels, labels: labels, classNames: classNames, sources: sources)
    }

    /// IDX files (MNIST, Fashion-MNIST), raw or gzipped: images [N, H, W] of unsigned bytes (gray, replicated to
    /// RGB) and labels [N].
    public static func idx(images imagesURL: URL, labels labelsURL: URL, classNames: [String]) throws -> ImageDataset {
        func read(_ url: URL) throws -> (dims: [Int], body: [UInt8]) {
            guard var data = try? Data(contentsOf: url) else {
                throw FileError(url, FileManager.default.fileExists(atPath: url.path) ? "cannot be read" : "no such file")
            }
            if data.starts(with: [0x1F, 0x8B]) { data = try Gzip.decompress(data, source: url) }
            let bytes = [UInt8](data)
            guard bytes.count >= 4, bytes[0] == 0, bytes[1] == 0, bytes[2] == 0x08 else {
                throw FileError(url, "is not an IDX file of unsigned bytes")
            }
            let rank = Int(bytes[3])
            guard bytes.count >= 4 + 4 * rank else { throw FileError(url, "truncated IDX header") }
            let dims = (0..<rank).map { d in (0..<4).reduce(0) { $0 << 8 | Int(bytes[4 + 4 * d + $1]) } }
            let start = 4 + 4 * rank
            guard let count = Shape.checkedCount(dims), bytes.count - start == count else {
                throw FileError(
                    url,
                    "holds \(bytes.count - start) data bytes, not the \(dims.map(String.init).joined(separator: "x")) its header declares: truncated?"
                )
            }
            return (dims, Array(bytes[start...]))
        }
        let (imageDims, gray) = try read(imagesURL)
        let (labelDims, labelBytes) = try read(labelsURL)
        guard imageDims.count == 3, labelDims == [imageDims[0]] else {
            throw FileError(imagesURL, "has dims \(imageDims) but its labels \(labelsURL.lastPathComponent) have \(labelDims)")
        }
        guard imageDims.allSatisfy({ $0 > 0 }) else { throw FileError(imagesURL, "declares \(imageDims) images: none, or of no pixels") }
        if let bad = labelBytes.firstIndex(where: { Int($0) >= classNames.count }) {
            throw FileError(labelsURL, "label \(bad) is \(labelBytes[bad]), beyond the \(classNames.count) classes")
        }
        var pixels = [UInt8](repeating: 0, count: gray.count * 3)
        for (i, v) in gray.enumerated() { pixels[3 * i] = v; pixels[3 * i + 1] = v; pixels[3 * i + 2] = v }
        return ImageDataset(
            width: imageDims[2], height: imageDims[1], pixels: pixels, labels: labelBytes.map(Int.init),
            classNames: classNames, sources: labelBytes.indices.map { "\(imagesURL.lastPathComponent)#\($0)" })
    }
}

extension ImageDataset {
    /// Per-channel mean and standard deviation of the pixels scaled to [0, 1] (the normalisation a model trained
    /// on this set uses).
    public func channelStatistics() -> (mean: [Float], std: [Float]) {
        var sum = [Double](repeating: 0, count: 3), squares = [Double](repeating: 0, count: 3)
        pixels.withUnsafeBufferPointer { p in
            for c in 0..<3 {
                var s: UInt64 = 0, q: UInt64 = 0
                for i in stride(from: c, to: p.count, by: 3) { let v = UInt64(p[i]); s += v; q += v * v }
                sum[c] = Double(s)
                squares[c] = Double(q)
            }
        }
        let n = Double(Swift.max(pixels.count / 3, 1))
        let mean = sum.map { $0 / n / 255 }
        let std = zip(squares, mean).map { (q, m) in Swift.max(q / n / 65025 - m * m, 1e-12).squareRoot() }
        return (mean.map { Float($0) }, std.map { Float($0) })
    }
}
