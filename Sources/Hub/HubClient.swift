import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import Tensors

/// Downloads a model's files from the Hugging Face Hub into the cache as `huggingface_hub`'s `hf_hub_download` does,
/// so that either finds what the other fetched. For each file: a HEAD of `ENDPOINT/ORG/NAME/resolve/REVISION/FILE`
/// gives the commit (`X-Repo-Commit`), the file's ETag (`X-Linked-Etag`, the SHA-256 of an LFS file, else `ETag`) and
/// size; the bytes go to `blobs/ETAG.incomplete` (an interrupted download continues with an HTTP Range request), are
/// checked (the size; the SHA-256 when the ETag is one), renamed to `blobs/ETAG`, and linked from
/// `snapshots/COMMIT/FILE`; `refs/REVISION` records the commit. The environment as `huggingface_hub` reads it:
/// `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`, the cache's location (`HubCache`).
public final class HubClient: @unchecked Sendable {
    public let cache: HubCache
    /// The hub's address (`HF_ENDPOINT`; https://huggingface.co).
    public let endpoint: String
    /// Sent as `Authorization: Bearer` to the hub (`HF_TOKEN`), never to a host it redirects to.
    let token: String?
    /// `HF_HUB_OFFLINE`: the cache only, no request.
    public let offline: Bool
    /// Hears each download's bytes so far (of the file's size, when known), for a progress bar.
    public var progress: (_ file: String, _ done: Int64, _ total: Int64?) -> Void = { _, _, _ in }
    /// How often a dropped connection is resumed before the download fails.
    public var attempts = 5
    /// Set once the hub has not answered: the other files come from the cache without waiting again.
    private var hubUnreachable = false

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        cache = HubCache(environment: environment)
        var endpoint = environment["HF_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://huggingface.co"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
        token = (environment["HF_TOKEN"] ?? environment["HUGGING_FACE_HUB_TOKEN"]).flatMap { $0.isEmpty ? nil : $0 }
        offline = ["1", "ON", "YES", "TRUE"].contains(
            (environment["HF_HUB_OFFLINE"] ?? environment["TRANSFORMERS_OFFLINE"] ?? "").uppercased())
    }

    /// What a model folder needs: every configuration file the repository has, and its first weights file in this
    /// order (safetensors before pickles; open_clip's names for `hf-hub:` names, which timm and open_clip use).
    public static func modelFiles(openCLIPFirst: Bool) -> (configurations: [String], weights: [String]) {
        let transformers = ["model.safetensors", "pytorch_model.bin"],
            openCLIP = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        return (
            ["config.json", "open_clip_config.json", "preprocessor_config.json", "vocab.json", "merges.txt", "tokenizer.json"],
            openCLIPFirst ? openCLIP + transformers : transformers + openCLIP
        )
    }

    /// The snapshot folder of `model` with its configuration and weights files, downloaded when missing (or, offline,
    /// found in the cache).
    public func modelSnapshot(_ model: HubModelName, openCLIPFirst: Bool = false) throws -> URL {
        let (configurations, weights) = Self.modelFiles(openCLIPFirst: openCLIPFirst)
        if offline {
            guard let folder = try cache.snapshot(model), weights.contains(where: { exists(folder.appendingPathComponent($0)) }) else {
                throw HubError(
                    "\(model) is not in the Hugging Face cache (\(cache.repoFolder(model).path)) and HF_HUB_OFFLINE is set: unset it to download \(model.repoId)\(model.revision.map { "@\($0)" } ?? ""), or fetch it with `huggingface-cli download \(model.repoId)`"
                )
            }
            return folder
        }
        var snapshot: URL?
        for file in configurations { if let url = try download(model, file: file) { snapshot = url.deletingLastPathComponent() } }
        guard let weightsFile = try weights.lazy.compactMap({ try self.download(model, file: $0) }).first else {
            throw HubError(
                "\(model.repoId) on \(endpoint) has none of the weights files SwiftViT reads (\(weights.joined(separator: ", ")))")
        }
        guard snapshot != nil else { throw HubError("\(model.repoId) on \(endpoint) has no config.json or open_clip_config.json") }
        return weightsFile.deletingLastPathComponent()
    }

    /// `file` of `model` in the cache, downloaded first unless its blob is there; nil when the repository has no such
    /// file.
    public func download(_ model: HubModelName, file: String) throws -> URL? {
        guard !file.isEmpty, !file.hasPrefix("/"), !file.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw HubError("\(file) is not a file name inside a repository")
        }
        let revision = model.revision ?? "main"
        // A commit's files never change: one already linked needs no request.
        if HubCache.isCommit(revision) {
            let pointer = cache.repoFolder(model).appendingPathComponent("snapshots/\(revision)/\(file)")
            if exists(pointer) { return pointer }
        }
        let url = "\(endpoint)/\(model.repoId)/resolve/\(Self.escape(revision, slashes: false))/\(Self.escape(file, slashes: true))"
        // As huggingface_hub: a hub that cannot be reached leaves what the cache has for the revision.
        func cached() -> URL?? {
            guard let folder = try? cache.snapshot(model) else { return nil }
            let pointer = folder.appendingPathComponent(file)
            return .some(exists(pointer) ? pointer : nil)
        }
        if hubUnreachable, let found = cached() { return found }
        let metadata: FileMetadata
        do {
            guard let found = try blocking({ try await self.metadata(url) }) else { return nil }
            metadata = found
        } catch let error as HubError {
            if error.unreachable {
                hubUnreachable = true
                if let found = cached() { return found }
            }
            throw HubError("\(model.repoId) \(file): \(error.message)")
        }
        let repo = cache.repoFolder(model)
        let fileManager = FileManager.default
        for folder in ["blobs", "refs", "snapshots/\(metadata.commit)"] {
            try fileManager.createDirectory(at: repo.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        if revision != metadata.commit {
            let ref = repo.appendingPathComponent("refs/\(revision)")
            try fileManager.createDirectory(at: ref.deletingLastPathComponent(), withIntermediateDirectories: true)
            try AtomicFile.write(Data(metadata.commit.utf8), to: ref)
        }
        let blob = repo.appendingPathComponent("blobs/\(metadata.etag)")
        if !exists(blob) {
            let partial = repo.appendingPathComponent("blobs/\(metadata.etag).incomplete")
            try blocking { try await self.fetch(metadata, to: partial, file: "\(model.repoId) \(file)") }
            try verify(partial, metadata, file: "\(model.repoId) \(file)")
            try fileManager.moveItem(at: partial, to: blob)
        }
        let pointer = repo.appendingPathComponent("snapshots/\(metadata.commit)/\(file)")
        try fileManager.createDirectory(at: pointer.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? fileManager.removeItem(at: pointer)
        // Relative, as huggingface_hub links: the cache may move.
        let depth = file.split(separator: "/").count + 1
        try fileManager.createSymbolicLink(
            atPath: pointer.path, withDestinationPath: String(repeating: "../", count: depth) + "blobs/\(metadata.etag)")
        return pointer
    }

    // MARK: HTTP

    struct FileMetadata {
        var commit: String
        var etag: String
        var size: Int64?
        /// Where the bytes are (the CDN a hub redirects an LFS file to), else the resolve URL.
        var location: String
    }

    /// Redirects are followed here (the token must not follow one to another host); a connection that cannot be made
    /// fails at once (a hub that is down leaves the cache), one that stalls for a minute fails and is resumed.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10), read: .seconds(60)))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// The HEAD of a resolve URL, following the hub's own relative redirects (a renamed repository) but not one to
    /// another host, whose address is where the bytes are; nil for a file the repository does not have.
    func metadata(_ url: String) async throws -> FileMetadata? {
        var current = url
        for _ in 0..<10 {
            var request = HTTPClientRequest(url: current)
            request.method = .HEAD
            request.headers.add(name: "Accept-Encoding", value: "identity")
            request.headers.add(name: "User-Agent", value: "SwiftViT")
            if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
            let response: HTTPClientResponse
            // huggingface_hub waits 10 s for this answer (its etag_timeout).
            do { response = try await Self.client.execute(request, timeout: .seconds(10)) } catch {
                throw HubError("cannot reach \(endpoint) (\(error)), and the cache has no copy", unreachable: true)
            }
            let headers = response.headers
            let code = response.status.code
            if (300..<400).contains(code), let location = headers.first(name: "Location"), location.hasPrefix("/") {
                current = Self.origin(of: current) + location
                continue
            }
            if code == 404, headers.first(name: "X-Error-Code") == "EntryNotFound" { return nil }
            switch code {
            case 200..<400: break
            case 401, 403:
                throw HubError("the hub refused access (HTTP \(code)): a private or gated repository needs HF_TOKEN with access to it")
            case 404:
                let kind = headers.first(name: "X-Error-Code") == "RevisionNotFound" ? "revision" : "repository"
                throw HubError("no such \(kind) on \(endpoint) (HTTP 404\(token == nil ? "; a private repository needs HF_TOKEN" : ""))")
            default: throw HubError("the hub answered HTTP \(code) \(response.status.reasonPhrase)")
            }
            guard let commit = headers.first(name: "X-Repo-Commit"), HubCache.isCommit(commit) else {
                throw HubError("the hub's answer has no X-Repo-Commit header (is \(endpoint) a Hugging Face Hub?)")
            }
            guard let etag = Self.normalise(etag: headers.first(name: "X-Linked-Etag") ?? headers.first(name: "ETag")) else {
                throw HubError("the hub's answer has no usable ETag")
            }
            let redirected = (300..<400).contains(code)
            let size = (headers.first(name: "X-Linked-Size") ?? (redirected ? nil : headers.first(name: "Content-Length"))).flatMap {
                Int64($0)
            }
            return FileMetadata(
                commit: commit, etag: etag, size: size, location: redirected ? headers.first(name: "Location") ?? current : current)
        }
        throw HubError("more than 10 redirects from \(url)")
    }

    /// Downloads `metadata`'s bytes to `partial`, continuing what it holds with a Range request, and again after a
    /// dropped connection (`attempts` times).
    func fetch(_ metadata: FileMetadata, to partial: URL, file: String) async throws {
        var failures = 0
        while true {
            do {
                try await fetchOnce(metadata, to: partial, file: file)
                return
            } catch let error as HubError where !error.retryable {
                throw error
            } catch {
                failures += 1
                if failures >= attempts {
                    throw HubError(
                        "\(file): the download failed \(failures) times (\(error)); run the command again to continue from the \(size(of: partial)) bytes kept in \(partial.path)"
                    )
                }
                try await Task.sleep(nanoseconds: UInt64(min(8, 1 << failures)) * 100_000_000)
            }
        }
    }

    private func fetchOnce(_ metadata: FileMetadata, to partial: URL, file: String) async throws {
        let fileManager = FileManager.default
        if !fileManager.fileExists(atPath: partial.path) { try Data().write(to: partial) }
        var offset = size(of: partial)
        if let total = metadata.size, offset >= total, offset > 0 {
            // All there already (or more: start again).
            if offset == total { return }
            try Data().write(to: partial)
            offset = 0
        }
        var current = metadata.location
        var response: HTTPClientResponse?
        for _ in 0..<10 {
            var request = HTTPClientRequest(url: current)
            request.headers.add(name: "Accept-Encoding", value: "identity")
            request.headers.add(name: "User-Agent", value: "SwiftViT")
            if offset > 0 { request.headers.add(name: "Range", value: "bytes=\(offset)-") }
            if let token, Self.origin(of: current) == Self.origin(of: endpoint) {
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
            }
            let answer = try await Self.client.execute(request, timeout: .hours(24))
            if (300..<400).contains(answer.status.code), let location = answer.headers.first(name: "Location") {
                current = location.hasPrefix("/") ? Self.origin(of: current) + location : location
                continue
            }
            response = answer
            break
        }
        guard let response else { throw HubError("\(file): more than 10 redirects", retryable: false) }
        let handle = try FileHandle(forWritingTo: partial)
        defer { try? handle.close() }
        switch response.status.code {
        case 206:
            try handle.seekToEnd()
        case 200:
            // The whole file (a server without ranges): from the start.
            try handle.truncate(atOffset: 0)
            offset = 0
        case 416:
            try handle.truncate(atOffset: 0)
            throw HubError("\(file): the server refused the range from byte \(offset); starting again")
        default:
            throw HubError("\(file): the download answered HTTP \(response.status.code) \(response.status.reasonPhrase)", retryable: false)
        }
        var done = offset
        progress(file, done, metadata.size)
        for try await buffer in response.body {
            try handle.write(contentsOf: Data(buffer.readableBytesView))
            done += Int64(buffer.readableBytes)
            if let total = metadata.size, done > total {
                try handle.truncate(atOffset: 0)
                throw HubError("\(file): the server sent more than the \(total) bytes the hub announced", retryable: false)
            }
            progress(file, done, metadata.size)
        }
        if let total = metadata.size, done < total {
            throw HubError("\(file): the connection ended after \(done) of \(total) bytes")
        }
    }

    /// The downloaded file's size as announced, and its SHA-256 where the ETag is one (an LFS file's): a file that
    /// does not match is removed and named.
    func verify(_ partial: URL, _ metadata: FileMetadata, file: String) throws {
        let fileManager = FileManager.default
        if let total = metadata.size, size(of: partial) != total {
            try? fileManager.removeItem(at: partial)
            throw HubError("\(file): \(size(of: partial)) bytes downloaded, the hub announced \(total); the download was removed")
        }
        guard metadata.etag.count == 64, metadata.etag.allSatisfy(\.isHexDigit) else { return }
        let handle = try FileHandle(forReadingFrom: partial)
        defer { try? handle.close() }
        var hash = SHA256()
        while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty { hash.update(data: chunk) }
        let digest = hash.finalize().map { String(format: "%02x", $0) }.joined()
        guard digest == metadata.etag.lowercased() else {
            try? fileManager.removeItem(at: partial)
            throw HubError(
                "\(file): the downloaded bytes' SHA-256 is \(digest), the hub's is \(metadata.etag); the download was removed (run again to fetch it anew)"
            )
        }
    }

    // MARK: Helpers

    /// `W/"abc"` or `"abc"` -> `abc`; nil when empty or not usable as a file name.
    static func normalise(etag: String?) -> String? {
        guard var etag else { return nil }
        if etag.hasPrefix("W/") { etag.removeFirst(2) }
        etag = etag.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        guard !etag.isEmpty, etag.count <= 256, etag.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }),
            !etag.hasPrefix(".")
        else { return nil }
        return etag
    }

    /// scheme://host[:port] of a URL.
    static func origin(of url: String) -> String {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host else { return url }
        return "\(scheme)://\(host)" + (components.port.map { ":\($0)" } ?? "")
    }

    /// A path part with what a URL path must escape escaped; a file keeps its slashes, a revision such as refs/pr/3
    /// has them escaped, as huggingface_hub sends them.
    static func escape(_ part: String, slashes: Bool) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "?#/;")
        return part.split(separator: "/", omittingEmptySubsequences: false).map {
            String($0).addingPercentEncoding(withAllowedCharacters: allowed) ?? String($0)
        }.joined(separator: slashes ? "/" : "%2F")
    }

    private func exists(_ url: URL) -> Bool { FileManager.default.fileExists(atPath: url.path) }

    private func size(of url: URL) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
    }
}

/// A hub problem, said in one line.
public struct HubError: Error, CustomStringConvertible {
    public let message: String
    /// Whether trying again (resuming) may help: a dropped connection, not a 404 or a bad hash.
    let retryable: Bool
    /// No answer at all from the hub (the cache may still serve).
    let unreachable: Bool
    init(_ message: String, retryable: Bool = true, unreachable: Bool = false) {
        (self.message, self.retryable, self.unreachable) = (message, retryable, unreachable)
    }
    public var description: String { message }
}

/// Runs async work to its end from synchronous code (the command line is synchronous).
func blocking<T>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result?.get() ?? { throw HubError("the download ended without a result") }()
}

/// Where `blocking`'s task leaves its result (written once, before the semaphore is signalled).
private final class ResultBox<T>: @unchecked Sendable { var result: Result<T, Error>? }
