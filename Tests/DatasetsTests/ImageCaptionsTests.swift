import Datasets
import Foundation
import Images
import Tensors
import TestSupport
import Testing

/// Image-caption pairs from a folder of images with `.txt` captions beside them, from JSONL, and from classes.
@Suite struct ImageCaptionsTests {
    func folder() throws -> URL {
        let url = try temporaryFolder("swiftvit-captions")
        try FileManager.default.createDirectory(at: url.appendingPathComponent("photos"), withIntermediateDirectories: true)
        for (n, grey) in [10, 120, 250].enumerated() {
            let image = RGBImage(width: 4, height: 4, pixels: [UInt8](repeating: UInt8(grey), count: 48))
            try PNG.write(image, to: url.appendingPathComponent("photos/\(n).png"))
        }
        return url
    }

    @Test func captionFilesBesideImages() throws {
        let root = try folder()
        defer { try? FileManager.default.removeItem(at: root) }
        try "a dark square\n\n  a black tile \n".write(to: root.appendingPathComponent("photos/0.txt"), atomically: false, encoding: .utf8)
        try "a light square".write(to: root.appendingPathComponent("photos/2.txt"), atomically: false, encoding: .utf8)
        let pairs = try ImageCaptions.load(root)
        #expect(pairs.count == 2)
        #expect(pairs.images.sources == ["photos/0.png", "photos/2.png"])
        #expect(pairs.captions == [["a dark square", "a black tile"], ["a light square"]])
        #expect(pairs.images.image(1).pixels[0] == 250)
        // The image without a caption is reported by name, not silently dropped.
        #expect(pairs.images.failures.count == 1 && "\(pairs.images.failures[0])".contains("photos/1.png"))
    }

    @Test func jsonLinesWithPathsRelativeToTheFile() throws {
        let root = try folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let lines = [
            #"{"image": "photos/1.png", "caption": "a grey square"}"#, "",
            #"{"image": "photos/1.png", "caption": "mid grey"}"#, #"{"image": "photos/0.png", "caption": "black"}"#
        ]
        let file = root.appendingPathComponent("pairs.jsonl")
        try lines.joined(separator: "\n").write(to: file, atomically: false, encoding: .utf8)
        let pairs = try ImageCaptions.load(file)
        #expect(pairs.images.sources == ["photos/0.png", "photos/1.png"])
        #expect(pairs.captions == [["black"], ["a grey square", "mid grey"]])

        // CRLF line endings read the same; a path out of the file's folder is refused (that line), unless allowed.
        try lines.joined(separator: "\r\n").write(to: file, atomically: false, encoding: .utf8)
        #expect(try ImageCaptions.load(file).captions == [["black"], ["a grey square", "mid grey"]])
        let inner = root.appendingPathComponent("inner")
        try FileManager.default.createDirectory(at: inner, withIntermediateDirectories: true)
        let escaping = inner.appendingPathComponent("pairs.jsonl")
        try [#"{"image": "../photos/0.png", "caption": "black"}"#, #"{"image": "\#(root.path)/photos/1.png", "caption": "grey"}"#]
            .joined(separator: "\n").write(to: escaping, atomically: false, encoding: .utf8)
        #expect(throws: (any Error).self) { try ImageCaptions.load(escaping) }  // nothing left to train on
        let allowed = try ImageCaptions.load(escaping, pathsOutside: true)
        #expect(allowed.count == 2)
        try FileManager.default.copyItem(at: root.appendingPathComponent("photos/0.png"), to: inner.appendingPathComponent("ok.png"))
        try (#"{"image": "ok.png", "caption": "inside"}"# + "\n" + #"{"image": "../photos/1.png", "caption": "outside"}"#)
            .write(to: escaping, atomically: false, encoding: .utf8)
        let confined = try ImageCaptions.load(escaping)
        #expect(confined.count == 1 && confined.images.failures.count == 1 && "\(confined.images.failures[0])".contains("lies outside"))

        try (lines + [#"{"image": "photos/2.png"}"#]).joined(separator: "\n").write(to: file, atomically: false, encoding: .utf8)
        #expect {
            _ = try ImageCaptions.load(file)
        } throws: { "\($0)".contains("pairs.jsonl") && "\($0)".contains("line 5") }
    }

    @Test func captionsFromClassNamesAndTemplates() {
        let data = ImageDataset(
            width: 1, height: 1, pixels: [0, 0, 0, 9, 9, 9], labels: [1, 0], classNames: ["aeroplane", "pickup_truck"])
        let pairs = ImageCaptions.fromClasses(data, templates: ["a photo of a {}.", "{}"])
        #expect(pairs.captions == [["a photo of a pickup truck.", "pickup truck"], ["a photo of a aeroplane.", "aeroplane"]])
    }
}
