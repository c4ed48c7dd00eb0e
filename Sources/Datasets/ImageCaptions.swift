import Foundation
import Images
import Tensors

/// Images with captions, in memory, for contrastive (CLIP) training: each image has one or more captions and each
/// step draws one of them. Read from a JSONL file of `{"image": PATH, "caption": TEXT}` lines (paths relative to the
/// file; an image on several lines has several captions), from a folder (or `.tar.gz`) where each image has a
/// `.txt` beside it with the same stem (each non-empty line a caption), or made from a labelled data set and
/// templates ("a photo of a {}.") with each class name.
public struct ImageCaptions: Sendable {
    /// The images (their labels: the class index when captions come from classes, else 0).
    public let images: ImageDataset
    /// captions[i]: the captions of image i.
    public let captions: [[String]]

    public init(images: ImageDataset, captions: [[String]]) {
        precondition(images.count == captions.count && captions.allSatisfy { !$0.isEmpty }, "every image needs a caption")
        self.images = images
        self.captions = captions
    }

    public var count: Int { images.count }

    /// Each image of a labelled set captioned with every template, `{}` replaced by its class name (underscores as
    /// spaces, as CLIP's class names are written).
    public static func fromClasses(_ data: ImageDataset, templates: [String]) -> ImageCaptions {
        let names = data.classNames.map { $0.replacingOccurrences(of: "_", with: " ") }
        let byClass = names.map { name in templates.map { $0.replacingOccurrences(of: "{}", with: name) } }
        return ImageCaptions(images: data, captions: data.labels.map { byClass[$0] })
    }

    /// A JSONL file or a folder / archive of images with `.txt` captions beside them. Images that cannot be read,
    /// or that have no caption, are listed in `images.failures` and left out. A JSONL file's image paths must lie in
    /// its folder (`../elsewhere.png`, an absolute path or a link out of it is a failure of that line) unless
    /// `pathsOutside` allows them; lines may end in CRLF.
    public static func load(_ url: URL, sizing: ImageSizing = .native, pathsOutside: Bool = false) throws -> ImageCaptions {
        let isJSONL = ["jsonl", "json"].contains(url.pathExtension.lowercased())
        var captionsByPath: [String: [String]] = [:]
        var entries: [(path: String, data: () throws -> Data)]
        var uncaptioned: [FileError] = []
        if isJSONL {
            guard let text = try? String(contentsOf: url, encoding: .utf8) else {
                throw FileError(url, FileManager.default.fileExists(atPath: url.path) ? "cannot be read as UTF-8 text" : "no such file")
            }
            let base = url.deletingLastPathComponent()
            // \r\n is one Character in Swift: isNewline splits CRLF files as LF ones.
            for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if trimmed.isEmpty { continue }
                guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any],
                    let image = object["image"] as? String, let caption = object["caption"] as? String
                else {
                    throw FileError(url, "line \(number + 1) is not {\"image\": PATH, \"caption\": TEXT}")
                }
                captionsByPath[image, default: []].append(caption)
            }
            let folder = base.standardizedFileURL.resolvingSymlinksInPath().path
            entries = captionsByPath.keys.sorted().map { path in
                let file = path.hasPrefix("/") ? URL(fileURLWithPath: path) : base.appendingPathComponent(path)
                return (
                    path,
                    {
                        let resolved = file.standardizedFileURL.resolvingSymlinksInPath().path
                        guard pathsOutside || resolved.hasPrefix(folder.hasSuffix("/") ? folder : folder + "/") else {
                            throw FileError(
                                file,
                                "lies outside \(folder), the folder of \(url.lastPathComponent) (paths outside it are read only when allowed)"
                            )
                        }
                        return try Data(contentsOf: file)
                    }
                )
            }
        } else {
            let all = try ImageDataset.folderEntries(url)
            let texts = Dictionary(
                all.filter { $0.path.lowercased().hasSuffix(".txt") }.map { (($0.path as NSString).deletingPathExtension, $0.data) },
                uniquingKeysWith: { first, _ in first })
            entries = []
            for entry in all where ["jpg", "jpeg", "png"].contains((entry.path as NSString).pathExtension.lowercased()) {
                let stem = (entry.path as NSString).deletingPathExtension
                let lines = (try? texts[stem]?()).flatMap { String(data: $0, encoding: .utf8) }?
                    .split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                guard let lines, !lines.isEmpty else {
                    uncaptioned.append(FileError(url.appendingPathComponent(entry.path), "has no caption (\(stem).txt beside it)"))
                    continue
                }
                captionsByPath[entry.path] = lines
                entries.append(entry)
            }
            guard !entries.isEmpty else {
                throw FileError(url, "holds no captioned images (each image needs a .txt of the same name beside it)")
            }
        }
        var images = try ImageDataset.imageFolder(
            entries: entries, root: isJSONL ? url.deletingLastPathComponent() : url, subfolder: nil, sizing: sizing, labelled: false)
        images.failures = uncaptioned + images.failures
        return ImageCaptions(images: images, captions: images.sources.map { captionsByPath[$0]! })
    }
}

/// The image-caption pairs a contrastive run trains on: in memory (`ImageCaptions`), or a stream of WebDataset
/// samples whose `.txt` members come with each batch (`StreamedImages`).
public protocol CaptionedImages {
    var trainingImages: any TrainingImages { get }
    /// What identifies the pairs, a line each (a resumed run must see the same).
    var pairIdentity: [String] { get }
    /// The captions of the data set's image `member`; nil when captions come with the batches instead.
    func captions(of member: Int) -> [String]?
}

extension ImageCaptions: CaptionedImages {
    public var trainingImages: any TrainingImages { images }
    public var pairIdentity: [String] { images.sources + captions.map { $0.joined(separator: "\u{1F}") } }
    public func captions(of member: Int) -> [String]? { captions[member] }
}

extension StreamedImages: CaptionedImages {
    public var trainingImages: any TrainingImages { self }
    public var pairIdentity: [String] { identity }
    public func captions(of member: Int) -> [String]? { nil }
}
