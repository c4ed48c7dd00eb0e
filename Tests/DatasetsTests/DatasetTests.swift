import Datasets
import Foundation
import Images
import Tensors
import TestSupport
import Testing

@Suite struct DatasetTests {
    /// root/<split>/<class>/<n>.png with solid-coloured 4x4 images (class c has red = 40·c + n), one corrupt file.
    func makeFolder(_ root: URL) throws {
        for (c, name) in ["cat", "dog", "ant"].enumerated() {
            let folder = root.appendingPathComponent("train/\(name)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for n in 0..<4 {
                let pixels = (0..<16).flatMap { _ -> [UInt8] in [UInt8(40 * c + n), 7, 9] }
                try PNG.write(RGBImage(width: 4, height: 4, pixels: pixels), to: folder.appendingPathComponent("\(n).png"))
            }
        }
        try Data("broken".utf8).write(to: root.appendingPathComponent("train/dog/broken.jpg"))
        try Data("notes".utf8).write(to: root.appendingPathComponent("train/README.txt"))
    }

    func checkFolder(_ dataset: ImageDataset) {
        #expect(dataset.classNames == ["ant", "cat", "dog"])  // sorted, as torchvision's ImageFolder
        #expect(dataset.count == 12 && dataset.width == 4 && dataset.height == 4)
        #expect(dataset.labels == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
        #expect(dataset.image(0).pixels[0] == 80 && dataset.image(5).pixels[0] == 1)  // ant/0.png, cat/1.png
        #expect(dataset.failures.count == 1 && "\(dataset.failures[0])".contains("broken.jpg"))
    }

    @Test func imageFolderFromADirectoryAndFromATarGz() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeFolder(root)
        checkFolder(try ImageDataset.imageFolder(root, subfolder: "train"))
        let archive = root.appendingPathComponent("data.tar.gz")
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/bin/tar")
        tar.arguments = ["czf", archive.path, "-C", root.path, "train"]
        try tar.run()
        tar.waitUntilExit()
        checkFolder(try ImageDataset.imageFolder(archive, subfolder: "train"))
        let truncated = root.appendingPathComponent("cut.tar.gz")
        try Data(try Data(contentsOf: archive).prefix(200)).write(to: truncated)
        #expect { try ImageDataset.imageFolder(truncated) } throws: { "\($0)".contains("cut.tar.gz") }
    }

    /// A data set assembled from links (a linked test/ folder, linked class folders, a loop back to the root) reads
    /// as if copied: links to folders are followed, loops are not.
    @Test func linkedFoldersAreFollowed() throws {
        let store = try temporaryFolder(), root = try temporaryFolder()
        defer { for f in [store, root] { try? FileManager.default.removeItem(at: f) } }
        try makeFolder(store)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("train"), withIntermediateDirectories: true)
        for name in ["ant", "cat", "dog"] {
            try FileManager.default.createSymbolicLink(
                at: root.appendingPathComponent("train/\(name)"), withDestinationURL: store.appendingPathComponent("train/\(name)"))
        }
        try FileManager.default.createSymbolicLink(
            at: root.appendingPathComponent("test"), withDestinationURL: store.appendingPathComponent("train"))
        try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("train/loop"), withDestinationURL: root)
        let parts = try ImageDataset.load(root, parts: [.train, .test])
        checkFolder(try #require(parts[.train]))
        checkFolder(try #require(parts[.test]))
    }

    @Test func cifarBinaryRecordsArePlanar() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        var bytes: [UInt8] = []
        for label: UInt8 in [3, 7] {
            bytes.append(label)
            bytes += [UInt8](repeating: 10 + label, count: 1024) + [UInt8](repeating: 20, count: 1024) + [UInt8](repeating: 30, count: 1024)
        }
        let url = root.appendingPathComponent("data_batch_1.bin")
        try Data(bytes).write(to: url)
        let dataset = try ImageDataset.cifarBinary([url], classNames: (0..<10).map(String.init))
        #expect(dataset.labels == [3, 7] && dataset.width == 32)
        #expect(Array(dataset.image(1).pixels[0..<6]) == [17, 20, 30, 17, 20, 30])
        try Data(bytes.dropLast(5)).write(to: url)
        #expect { try ImageDataset.cifarBinary([url], classNames: (0..<10).map(String.init)) } throws: { "\($0)".contains("truncated") }
    }

    @Test func idxImagesAndLabels() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let images: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3] + (0..<12).map { UInt8($0 * 20) }
        let labels: [UInt8] = [0, 0, 8, 1, 0, 0, 0, 2, 1, 0]
        let imagesURL = root.appendingPathComponent("images-idx3-ubyte"), labelsURL = root.appendingPathComponent("labels-idx1-ubyte")
        try Data(images).write(to: imagesURL)
        try Data(labels).write(to: labelsURL)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-k", imagesURL.path]
        try gzip.run()
        gzip.waitUntilExit()
        for url in [imagesURL, root.appendingPathComponent("images-idx3-ubyte.gz")] {
            let dataset = try ImageDataset.idx(images: url, labels: labelsURL, classNames: ["a", "b"])
            #expect(dataset.count == 2 && dataset.width == 3 && dataset.height == 2 && dataset.labels == [1, 0])
            #expect(Array(dataset.image(1).pixels[0..<6]) == [120, 120, 120, 140, 140, 140])
        }
    }

    /// Damaged IDX files and archives are errors naming the file, never traps (dimensions that overflow, labels past
    /// the classes, empty images, a negative tar size) and never unbounded memory (a gzip bomb stops at its limit).
    @Test func hostileIDXFilesAndArchivesAreErrors() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        func write(_ name: String, _ bytes: [UInt8]) throws -> URL {
            let url = root.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            return url
        }
        let labels = try write("labels", [0, 0, 8, 1, 0, 0, 0, 2, 1, 0])
        let cases: [(URL, URL, String)] = [
            (try write("huge", [0, 0, 8, 3] + [UInt8](repeating: 0xFF, count: 12) + [1, 2, 3]), labels, "not the 4294967295x"),
            (try write("empty", [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]), labels, "none, or of no pixels"),
            (
                try write("images", [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 7, 7]),
                try write("labels-bad", [0, 0, 8, 1, 0, 0, 0, 2, 1, 200]), "label 1 is 200, beyond the 2 classes"
            )
        ]
        for (images, labels, reason) in cases {
            #expect {
                try ImageDataset.idx(images: images, labels: labels, classNames: ["a", "b"])
            } throws: { "\($0)".contains(root.path) && "\($0)".contains(reason) }
        }
        // A tar header whose size field says -1.
        var header = [UInt8](repeating: 0, count: 512)
        header.replaceSubrange(0..<5, with: Array("a.png".utf8))
        header.replaceSubrange(124..<136, with: Array("-0000000001 ".utf8))
        let tar = root.appendingPathComponent("bad.tar")
        #expect { try Tar.files(Data(header + [UInt8](repeating: 0, count: 1024)), source: tar) } throws: {
            "\($0)".contains("bad.tar") && "\($0)".contains("unreadable size")
        }
        // 10 MB of zeros gzip to about 10 KB; with a 1 MB limit inflating stops there.
        let zeros = root.appendingPathComponent("zeros")
        try Data(count: 10_000_000).write(to: zeros)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = [zeros.path]
        try gzip.run()
        gzip.waitUntilExit()
        let packed = try Data(contentsOf: root.appendingPathComponent("zeros.gz"))
        #expect(try Gzip.decompress(packed, source: zeros).count == 10_000_000)
        #expect { try Gzip.decompress(packed, source: zeros, limit: 1_000_000) } throws: {
            "\($0)".contains("zeros") && "\($0)".contains("more than 1000000 bytes")
        }
    }

    @Test func stratifiedSplitKeepsClassProportionsAndIsSeeded() {
        let labels = (0..<100).map { $0 < 60 ? 0 : 1 }
        let dataset = ImageDataset(
            width: 1, height: 1, pixels: labels.flatMap { [UInt8($0), 0, 0] }, labels: labels, classNames: ["a", "b"])
        let (train, validation) = dataset.stratifiedSplit(validationFraction: 0.2, seed: 5)
        #expect(validation.labels.filter { $0 == 0 }.count == 12 && validation.labels.filter { $0 == 1 }.count == 8)
        #expect(train.count == 80)
        #expect(dataset.stratifiedSplit(validationFraction: 0.2, seed: 5).validation.pixels == validation.pixels)
    }
}
