import Foundation
import Tensors

/// A model on the Hugging Face Hub as timm, transformers and open_clip name it: `hf-hub:ORG/NAME` (timm, open_clip)
/// or `ORG/NAME` (transformers), either with `@REVISION` (a branch, a tag or a commit).
public struct HubModelName: Equatable, Sendable, CustomStringConvertible {
    public let organisation: String
    public let name: String
    /// The branch, tag or commit asked for; nil is the default branch, `main`.
    public let revision: String?

    /// `text` as a hub name, or nil when it is not one. Organisation and name are what the hub allows (letters,
    /// digits, `-`, `_`, `.`; neither starting with `.` or `-`, no `..`, at most 96 characters); a revision is
    /// anything but `..`, a leading `/` or a control character (it names a file under `refs/`).
    public init?(_ text: String) {
        var rest = Substring(text)
        if rest.hasPrefix("hf-hub:") { rest = rest.dropFirst("hf-hub:".count) }
        var revision: String?
        if let at = rest.firstIndex(of: "@") {
            revision = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy(Self.isNamePart) else { return nil }
        if let revision {
            guard !revision.isEmpty, revision.count <= 256, !revision.hasPrefix("/"), !revision.contains(".."),
                !revision.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
            else { return nil }
        }
        (organisation, name, self.revision) = (String(parts[0]), String(parts[1]), revision)
    }

    static func isNamePart(_ part: Substring) -> Bool {
        guard (1...96).contains(part.count), !part.contains(".."), let first = part.first, first != ".", first != "-" else { return false }
        return part.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    /// `ORG/NAME`, as the hub's URLs and `huggingface_hub` name the repository.
    public var repoId: String { "\(organisation)/\(name)" }
    public var description: String { repoId + (revision.map { "@\($0)" } ?? "") }
}

/// The Hugging Face cache as `huggingface_hub` lays it out, so that a model either downloads is found by the other:
/// `ROOT/models--ORG--NAME/` holding `blobs/` (each file once, named by its ETag: the SHA-256 of an LFS file),
/// `snapshots/COMMIT/PATH` (links into `blobs/`) and `refs/BRANCH` (the commit a branch or tag pointed to when it was
/// last fetched).
public struct HubCache: Sendable {
    public let root: URL

    /// `$HF_HUB_CACHE` (or the older `$HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`, as `huggingface_hub` decides.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        func path(_ key: String) -> String? {
            guard let value = environment[key], !value.isEmpty else { return nil }
            return (value as NSString).expandingTildeInPath
        }
        if let hub = path("HF_HUB_CACHE") ?? path("HUGGINGFACE_HUB_CACHE") {
            root = URL(fileURLWithPath: hub)
        } else {
            let home =
                path("HF_HOME")
                ?? ((path("XDG_CACHE_HOME") ?? (NSHomeDirectory() as NSString).appendingPathComponent(".cache")) as NSString)
                .appendingPathComponent("huggingface")
            root = URL(fileURLWithPath: home).appendingPathComponent("hub")
        }
    }

    public init(root: URL) { self.root = root }

    /// `models--ORG--NAME`.
    public func repoFolder(_ model: HubModelName) -> URL {
        root.appendingPathComponent("models--\(model.organisation)--\(model.name)")
    }

    /// The commit `model`'s revision stands for in the cache: a 40-digit commit as given, else what `refs/REVISION`
    /// holds; nil when the cache has no such ref.
    public func commit(_ model: HubModelName) throws -> String? {
        let revision = model.revision ?? "main"
        if Self.isCommit(revision) { return revision }
        let ref = repoFolder(model).appendingPathComponent("refs").appendingPathComponent(revision)
        guard FileManager.default.fileExists(atPath: ref.path) else { return nil }
        let text = try String(contentsOf: ref, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard Self.isCommit(text) else { throw FileError(ref, "does not hold a commit (40 hexadecimal digits): \(text.prefix(80))") }
        return text
    }

    /// The cached snapshot of `model`'s revision (a folder of its files, as a checkpoint folder is read), or nil when
    /// the cache does not have it.
    public func snapshot(_ model: HubModelName) throws -> URL? {
        guard let commit = try commit(model) else { return nil }
        let folder = repoFolder(model).appendingPathComponent("snapshots").appendingPathComponent(commit)
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else { return nil }
        return folder
    }

    static func isCommit(_ text: String) -> Bool { text.count == 40 && text.allSatisfy(\.isHexDigit) }
}

/// Where a model named on the command line (`--model`, `--init`, `--teacher`, ...) is: a path when one exists, else
/// a hub name (`hf-hub:ORG/NAME[@REV]`, `ORG/NAME[@REV]`) fetched into, or found in, the Hugging Face cache.
public enum ModelLocation {
    public static func resolve(_ text: String, client: @autoclosure () -> HubClient = HubClient()) throws -> URL {
        let hubPrefix = text.hasPrefix("hf-hub:")
        if !hubPrefix, FileManager.default.fileExists(atPath: (text as NSString).expandingTildeInPath) {
            return URL(fileURLWithPath: (text as NSString).expandingTildeInPath)
        }
        guard let name = HubModelName(text) else {
            if hubPrefix { throw FileError(URL(fileURLWithPath: text), "is not a hub name (hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION)") }
            return URL(fileURLWithPath: text)  // a missing path: the loader names it
        }
        // timm and open_clip name hub models hf-hub:...; open_clip's repositories keep its own file names.
        return try client().modelSnapshot(name, openCLIPFirst: hubPrefix)
    }
}
