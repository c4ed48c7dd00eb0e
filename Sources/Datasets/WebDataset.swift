import Foundation
import Tensors

/// WebDataset shards as timm and open_clip read them: tar files whose members sharing a key (the path up to the first
/// dot of the base name) make one sample, `.jpg/.jpeg/.png/.webp` its image, `.cls` its integer label, `.txt` its
/// caption, `.json` anything else. Shards are read one at a time (memory bounded by a shard, not by the data set).
public enum WebDataset {
    /// One sample: its key and its members by extension (lower-cased, everything after the base name's first dot).
    public struct Sample: Sendable, Equatable {
        public var key: String
        public var members: [String: Data]
        /// The shard it came from (for error messages).
        public var shard: String

        public init(key: String, members: [String: Data], shard: String) { (self.key, self.members, self.shard) = (key, members, shard) }

        public static let imageExtensions = ["jpg", "jpeg", "png", "webp"]

        /// The image member's bytes and extension.
        public var image: (data: Data, ext: String)? {
            for ext in Self.imageExtensions { if let data = members[ext] { return (data, ext) } }
            return nil
        }

        /// The `.cls` label: a decimal integer (whitespace around it allowed); an error naming the shard and member
        /// otherwise.
        public func label() throws -> Int? {
            guard let data = members["cls"] else { return nil }
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let value = Int(text), value >= 0 else {
                throw FileError(URL(fileURLWithPath: shard), "member \(key).cls is '\(text.prefix(40))', not a class index")
            }
            return value
        }

        /// The `.txt` caption.
        public var caption: String? { members["txt"].map { String(decoding: $0, as: UTF8.self) } }
    }

    /// A shard list as webdataset's `braceexpand` spells it: `{a..b}` numeric ranges (zero-padded to the width of
    /// their bounds), `{x,y}` alternatives, several lists joined with `::`.
    public static func expand(_ pattern: String) throws -> [String] {
        try pattern.components(separatedBy: "::").flatMap { try expandBraces($0) }
    }

    static func expandBraces(_ pattern: String) throws -> [String] {
        guard let open = pattern.firstIndex(of: "{") else { return [pattern] }
        guard let close = pattern[open...].firstIndex(of: "}") else { throw ShardListError("unclosed { in \(pattern)") }
        let head = String(pattern[..<open]), body = String(pattern[pattern.index(after: open)..<close])
        let tail = try expandBraces(String(pattern[pattern.index(after: close)...]))
        var choices: [String]
        let range = body.components(separatedBy: "..")
        if range.count == 2, let low = Int(range[0]), let high = Int(range[1]) {
            guard low <= high, high - low < 10_000_000 else { throw ShardListError("range {\(body)} runs backwards or is too long") }
            let width = range[0].count
            choices = (low...high).map { value in
                let digits = String(value)
                return range[0].hasPrefix("0") && digits.count < width
                    ? String(repeating: "0", count: width - digits.count) + digits : digits
            }
        } else {
            choices = body.components(separatedBy: ",")
        }
        return choices.flatMap { choice in tail.map { head + choice + $0 } }
    }

    public struct ShardListError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = "shard list: \(description)" }
    }

    /// The key and extension of a member path, as webdataset's `base_plus_ext`: "dir/name.seg.jpg" -> ("dir/name",
    /// "seg.jpg"); nil for a path whose base name has no dot.
    public static func keyAndExtension(_ path: String) -> (key: String, ext: String)? {
        let slash = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        guard let dot = path[slash...].firstIndex(of: ".") else { return nil }
        let key = String(path[..<dot])
        guard !key.isEmpty, key.last != "/" else { return nil }
        return (key, String(path[path.index(after: dot)...]).lowercased())
    }

    /// The samples of one shard, in archive order: consecutive members with one key make a sample (as
    /// webdataset's `group_by_keys`); members without an extension are skipped.
    public static func samples(in shard: URL) throws -> [Sample] {
        guard FileManager.default.fileExists(atPath: shard.path) else { throw FileError(shard, "no such shard") }
        let data: Data
        do { data = try Data(contentsOf: shard, options: .alwaysMapped) } catch {
            throw FileError(shard, "cannot be read: \(error.localizedDescription)")
        }
        var samples: [Sample] = []
        for (path, contents) in try Tar.files(data, source: shard) {
            guard let (key, ext) = keyAndExtension(path) else { continue }
            if samples.last?.key == key, samples[samples.count - 1].members[ext] == nil {
                samples[samples.count - 1].members[ext] = Data(contents)
            } else {
                samples.append(Sample(key: key, members: [ext: Data(contents)], shard: shard.path))
            }
        }
        return samples
    }

    /// The shards `data` names, by part, or nil when it names none (an image folder, CIFAR, IDX files): a shard list
    /// (a `.tar` path, with braces and `::` as `expand` reads them), or a folder of `.tar` shards where `train-*.tar`
    /// is the training part and `test-*`, `val-*` or `validation-*` the test part, as `vit shard` writes them (shards
    /// of other names are one undivided training part). A listed shard that does not exist is an error naming it.
    public static func shardParts(_ data: String) throws -> [DataPart: [URL]]? {
        let files = FileManager.default
        var isFolder: ObjCBool = false
        if files.fileExists(atPath: data, isDirectory: &isFolder), isFolder.boolValue {
            let tars = ((try? files.contentsOfDirectory(atPath: data)) ?? []).filter { $0.hasSuffix(".tar") && !$0.hasPrefix(".") }.sorted()
            guard !tars.isEmpty else { return nil }
            let folder = URL(fileURLWithPath: data)
            let train = tars.filter { $0.hasPrefix("train-") }
            let test = tars.filter { name in ["test-", "val-", "validation-"].contains { name.hasPrefix($0) } }
            var parts: [DataPart: [URL]] = [
                .train: (train.isEmpty && test.isEmpty ? tars : train).map { folder.appendingPathComponent($0) }
            ]
            if !test.isEmpty { parts[.test] = test.map { folder.appendingPathComponent($0) } }
            if parts[.train]!.isEmpty { parts[.train] = nil }
            return parts
        }
        guard data.hasSuffix(".tar") || data.contains("::") || (data.contains("{") && data.contains(".tar")) else { return nil }
        let shards = try expand(data).map { URL(fileURLWithPath: $0) }
        for shard in shards where !files.fileExists(atPath: shard.path) {
            throw FileError(shard, "no such shard (the shard list \(data) names it)")
        }
        return [.train: shards]
    }

    /// The class names `_info.json` beside the shards lists (`vit shard` writes them), if any.
    public static func classNames(in folder: URL) -> [String]? {
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("_info.json")),
            let info = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return info["classes"] as? [String]
    }

    /// The samples of `shards` counted by reading them (shards without `sizes.json` or `_info.json`), with the
    /// largest `.cls` label seen (-1: none) and a line for each shard that could not be read to its end.
    public static func countSamples(_ shards: [URL]) -> (count: Int, largestLabel: Int, problems: [String]) {
        var count = 0, largest = -1, problems: [String] = []
        for shard in shards {
            do {
                let reader = try SampleReader(shard)
                while let sample = try reader.next() {
                    count += 1
                    if let label = try? sample.label() { largest = max(largest, label) }
                }
            } catch {
                problems.append("\(error)")
            }
        }
        return (count, largest, problems)
    }

    /// The sample count of the shards in `folder`, from open_clip's `sizes.json` ({shard name: count}) or timm's
    /// `_info.json` ({"num_samples": N} or per split), when one is there.
    public static func sampleCount(in folder: URL, shards: [URL]) -> Int? {
        if let data = try? Data(contentsOf: folder.appendingPathComponent("sizes.json")),
            let sizes = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        {
            let counts = shards.compactMap { (sizes[$0.lastPathComponent] as? NSNumber)?.intValue }
            if counts.count == shards.count { return counts.reduce(0, +) }
        }
        if let data = try? Data(contentsOf: folder.appendingPathComponent("_info.json")),
            let info = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        {
            if let n = (info["num_samples"] as? NSNumber)?.intValue { return n }
        }
        return nil
    }
}

/// Writes WebDataset shards reproducibly: members in sample order, ustar headers with mode 0644, owner 0 and time 0,
/// a new shard when the next sample would pass `maxCount` samples or `maxSize` bytes; `writeIndex` adds `sizes.json`
/// and `_info.json`. Every file is written under a temporary name and renamed.
public struct ShardWriter {
    public let folder: URL
    public let prefix: String
    public let maxCount: Int
    public let maxSize: Int
    private var current = Data()
    private var count = 0
    private var index = 0
    public private(set) var sizes: [(name: String, count: Int)] = []

    public init(folder: URL, prefix: String = "shard", maxCount: Int = 10_000, maxSize: Int = 1 << 30) throws {
        (self.folder, self.prefix, self.maxCount, self.maxSize) = (folder, prefix, max(maxCount, 1), max(maxSize, 1024))
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    /// One sample: its members (extension -> bytes), written as KEY.EXT in extension order.
    public mutating func write(key: String, members: [(ext: String, data: Data)]) throws {
        var entry = Data()
        for (ext, data) in members { entry += Self.member(name: "\(key).\(ext)", data: data) }
        if count > 0 && (count >= maxCount || current.count + entry.count > maxSize) { try flush() }
        current += entry
        count += 1
    }

    /// Writes the last shard; returns every shard's name and sample count.
    public mutating func finish() throws -> [(name: String, count: Int)] {
        if count > 0 { try flush() }
        return sizes
    }

    /// The index files of the shards in `folder`: `sizes.json` (open_clip: each shard's sample count) and
    /// `_info.json` (the total, the shards, the class names).
    public static func writeIndex(in folder: URL, sizes: [(name: String, count: Int)], classNames: [String]?) throws {
        let sizesJSON = Dictionary(uniqueKeysWithValues: sizes.map { ($0.name, $0.count) })
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: sizesJSON, options: [.sortedKeys]), to: folder.appendingPathComponent("sizes.json"))
        var info: [String: Any] = ["num_samples": sizes.reduce(0) { $0 + $1.count }, "shards": sizes.map(\.name)]
        if let classNames { info["classes"] = classNames }
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys]), to: folder.appendingPathComponent("_info.json"))
    }

    private mutating func flush() throws {
        let name = String(format: "%@-%06d.tar", prefix, index)
        try AtomicFile.write(current + Data(count: 1024), to: folder.appendingPathComponent(name))  // two zero blocks end it
        sizes.append((name, count))
        (current, count, index) = (Data(), 0, index + 1)
    }

    /// A ustar member: header (name up to 100 bytes, else split into prefix/name at a slash), data padded to 512.
    static func member(name: String, data: Data) -> Data {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, length: Int) {
            for (i, byte) in text.utf8.prefix(length).enumerated() { header[offset + i] = byte }
        }
        var base = name, prefix = ""
        if name.utf8.count > 100, let slash = name.lastIndex(of: "/") {
            (prefix, base) = (String(name[..<slash]), String(name[name.index(after: slash)...]))
        }
        put(base, at: 0, length: 100)
        put("0000644", at: 100, length: 8)
        put("0000000", at: 108, length: 8)
        put("0000000", at: 116, length: 8)
        put(String(format: "%011o", data.count), at: 124, length: 12)
        put("00000000000", at: 136, length: 12)
        put("        ", at: 148, length: 8)
        header[156] = UInt8(ascii: "0")
        put("ustar", at: 257, length: 6)
        put("00", at: 263, length: 2)
        put(prefix, at: 345, length: 155)
        let checksum = header.reduce(0) { $0 + Int($1) }
        put(String(format: "%06o", checksum), at: 148, length: 6)
        header[154] = 0
        header[155] = UInt8(ascii: " ")
        return Data(header) + data + Data(count: (512 - data.count % 512) % 512)
    }
}
