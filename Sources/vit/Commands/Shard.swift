import ArgumentParser
import Datasets
import Foundation

/// Class folders to WebDataset shards.
struct Shard: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an image folder as WebDataset shards (tar files: KEY.jpg/.png and KEY.cls per image).",
        discussion:
            "DIR holds <class>/<image> folders, or train/ and test/ (or val/) each holding them; the class index is the folder's place among the sorted class names. Each part becomes OUTPUT/<part>-000000.tar, ... (one part: shard-000000.tar, ...), with sizes.json (open_clip) and _info.json (the sample count and class names). Images are copied as they are (no re-encoding), in sorted path order under keys 00000000, 00000001, ...: the same folder gives the same bytes. Python's webdataset and timm read the shards."
    )

    @Argument(help: "The image folder.") var folder: String
    @Option(name: .shortAndLong, help: "Output folder for the shards.") var output: String
    @Option(help: "At most this many images per shard.") var maxCount = 10_000
    @Option(help: "At most this many bytes per shard (a shard holds at least one image).") var maxSize = 1 << 30

    func validate() throws {
        if maxCount < 1 { throw ValidationError("--max-count must be at least 1") }
        if maxSize < 1024 { throw ValidationError("--max-size must be at least 1024 bytes") }
    }

    func run() throws {
        let root = URL(fileURLWithPath: folder)
        let files = FileManager.default
        var isFolder: ObjCBool = false
        guard files.fileExists(atPath: root.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw CommandFailure("\(folder) is not a folder of <class>/<image> folders")
        }
        func subfolders(_ url: URL) -> [String] {
            ((try? files.contentsOfDirectory(atPath: url.path)) ?? []).filter { name in
                var dir: ObjCBool = false
                return !name.hasPrefix(".") && files.fileExists(atPath: url.appendingPathComponent(name).path, isDirectory: &dir)
                    && dir.boolValue
            }.sorted()
        }
        let top = subfolders(root)
        let partNames = ["train", "test", "val", "validation"].filter(top.contains)
        let parts: [(prefix: String, url: URL)] =
            partNames.isEmpty ? [("shard", root)] : partNames.map { ($0, root.appendingPathComponent($0)) }
        let classNames = subfolders(parts[0].url)
        guard !classNames.isEmpty else { throw CommandFailure("\(parts[0].url.path) has no class folders") }
        let extensions: Set<String> = ["jpg", "jpeg", "png", "webp"]
        var written = 0
        var sizes: [(name: String, count: Int)] = []
        for (prefix, url) in parts {
            var writer = try ShardWriter(folder: URL(fileURLWithPath: output), prefix: prefix, maxCount: maxCount, maxSize: maxSize)
            var index = 0
            for (label, name) in classNames.enumerated() {
                let classFolder = url.appendingPathComponent(name)
                let images = ((try? files.contentsOfDirectory(atPath: classFolder.path)) ?? [])
                    .filter { extensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
                for image in images {
                    let path = classFolder.appendingPathComponent(image)
                    let data: Data
                    do { data = try Data(contentsOf: path) } catch { throw CommandFailure("\(path.path): cannot be read") }
                    let ext = (image as NSString).pathExtension.lowercased()
                    try writer.write(
                        key: String(format: "%08d", index), members: [(ext == "jpeg" ? "jpg" : ext, data), ("cls", Data("\(label)".utf8))])
                    index += 1
                }
            }
            let shards = try writer.finish()
            sizes += shards
            printError("\(prefix): \(index) images in \(shards.count) shards")
            written += index
        }
        try ShardWriter.writeIndex(in: URL(fileURLWithPath: output), sizes: sizes, classNames: classNames)
        printError("wrote \(written) images of \(classNames.count) classes to \(output)")
    }
}
