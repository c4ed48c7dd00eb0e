import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A loopback server that answers as the Hugging Face Hub does for what SwiftViT asks (huggingface_hub's protocol):
/// `HEAD/GET /ORG/NAME/resolve/REVISION/FILE` with `X-Repo-Commit`, an `ETag` (a small file's) or `X-Linked-Etag` /
/// `X-Linked-Size` and a 302 to a CDN path (an LFS file's, whose ETag is its SHA-256), 404 with `X-Error-Code`
/// (`EntryNotFound`, `RevisionNotFound`) or 401 (`RepoNotFound`), and a CDN that honours `Range` (on the same
/// server, named `localhost` where the hub is 127.0.0.1: another host to a client). Faults on demand: a
/// connection dropped after some bytes, bytes that do not match their hash.
final class HubTestServer: @unchecked Sendable {
    struct Repository {
        /// Branch or tag -> commit.
        var refs: [String: String]
        /// Commit -> file -> bytes.
        var files: [String: [String: Data]]
    }

    /// Files at least this large are LFS files (as the hub stores weights).
    static let lfsThreshold = 1024

    private let lock = NSLock()
    private var repositories: [String: Repository] = [:]
    private var dropAfter: [String: Int] = [:]  // sha256 -> bytes sent before the connection drops (once)
    private var corrupt: Set<String> = []  // sha256 of files served with a byte changed
    private var log: [String] = []
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channel: Channel?

    var port: Int { channel?.localAddress?.port ?? 0 }
    var endpoint: String { "http://127.0.0.1:\(port)" }
    /// "METHOD PATH [Range]" of every request so far.
    var requests: [String] { lock.withLock { log } }

    init() throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap { channel.pipeline.addHandler(Handler(server: self)) }
            }
        channel = try bootstrap.bind(host: "127.0.0.1", port: 0).wait()
    }

    func shutdown() {
        try? channel?.close().wait()
        try? group.syncShutdownGracefully()
    }

    func add(_ repoId: String, refs: [String: String], files: [String: [String: Data]]) {
        lock.withLock { repositories[repoId] = Repository(refs: refs, files: files) }
    }

    func dropConnection(of data: Data, after bytes: Int) { lock.withLock { dropAfter[Self.sha256(data)] = bytes } }
    func corrupt(_ data: Data) { _ = lock.withLock { corrupt.insert(Self.sha256(data)) } }

    static func sha256(_ data: Data) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }

    /// What to answer: status, headers, body, and the byte count after which to drop the connection.
    struct Answer {
        var status: HTTPResponseStatus
        var headers: [(String, String)] = []
        var body = Data()
        var dropAfter: Int?
    }

    func answer(method: HTTPMethod, uri: String, headers: HTTPHeaders) -> Answer {
        lock.withLock {
            log.append(
                "\(method) \(uri)" + (headers.first(name: "Range").map { " \($0)" } ?? "")
                    + (headers.first(name: "Authorization").map { " auth=\($0)" } ?? ""))
            let path = (uri.split(separator: "?").first.map(String.init) ?? uri).removingPercentEncoding ?? uri
            let parts = path.split(separator: "/", maxSplits: 4, omittingEmptySubsequences: true).map(String.init)
            if parts.count == 2, parts[0] == "cdn" { return cdn(sha: parts[1], method: method, headers: headers) }
            guard parts.count == 5, parts[2] == "resolve" else { return Answer(status: .notFound) }
            guard let repository = repositories["\(parts[0])/\(parts[1])"] else {
                return Answer(status: .unauthorized, headers: [("X-Error-Code", "RepoNotFound")])
            }
            // The revision is escaped as one path part (refs%2Fpr%2F3); the rest is the file.
            let revision = parts[3], file = parts[4]
            guard let commit = repository.refs[revision] ?? (repository.files[revision] != nil ? revision : nil),
                let files = repository.files[commit]
            else { return Answer(status: .notFound, headers: [("X-Error-Code", "RevisionNotFound")]) }
            guard let data = files[file] else {
                return Answer(status: .notFound, headers: [("X-Error-Code", "EntryNotFound"), ("X-Repo-Commit", commit)])
            }
            if data.count >= Self.lfsThreshold {
                let sha = Self.sha256(data)
                return Answer(
                    status: .found,
                    headers: [
                        ("X-Repo-Commit", commit), ("X-Linked-Etag", "\"\(sha)\""), ("X-Linked-Size", "\(data.count)"),
                        ("ETag", "\"git-\(sha.prefix(12))\""), ("Location", "http://localhost:\(port)/cdn/\(sha)?expires=1")
                    ])
            }
            let etag = "\"" + String(Insecure.SHA1.hash(data: data).map { String(format: "%02x", $0) }.joined()) + "\""
            return Answer(
                status: .ok, headers: [("X-Repo-Commit", commit), ("ETag", etag), ("Content-Length", "\(data.count)")],
                body: method == .HEAD ? Data() : data)
        }
    }

    /// The CDN: an LFS file by its hash, with ranges.
    private func cdn(sha: String, method: HTTPMethod, headers: HTTPHeaders) -> Answer {
        let all = repositories.values.flatMap { $0.files.values.flatMap(\.values) }
        guard var data = all.first(where: { Self.sha256($0) == sha }) else { return Answer(status: .notFound) }
        if corrupt.contains(sha) { data[data.count / 2] ^= 0xFF }
        var status = HTTPResponseStatus.ok
        var extra: [(String, String)] = [("Accept-Ranges", "bytes")]
        if let range = headers.first(name: "Range"), range.hasPrefix("bytes="), let start = Int(range.dropFirst(6).prefix { $0 != "-" }) {
            guard start < data.count else { return Answer(status: .rangeNotSatisfiable) }
            extra.append(("Content-Range", "bytes \(start)-\(data.count - 1)/\(data.count)"))
            data = data.subdata(in: start..<data.count)
            status = .partialContent
        }
        var answer = Answer(status: status, headers: extra + [("Content-Length", "\(data.count)")], body: method == .HEAD ? Data() : data)
        if method == .GET, let drop = dropAfter.removeValue(forKey: sha) { answer.dropAfter = drop }
        return answer
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: HubTestServer
        private var head: HTTPRequestHead?
        init(server: HubTestServer) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): self.head = head
            case .body: break
            case .end:
                guard let head else { return }
                let answer = server.answer(method: head.method, uri: head.uri, headers: head.headers)
                var headers = HTTPHeaders(answer.headers)
                if !headers.contains(name: "Content-Length") { headers.add(name: "Content-Length", value: "\(answer.body.count)") }
                context.write(
                    wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: answer.status, headers: headers))), promise: nil)
                let body = answer.dropAfter.map { answer.body.prefix($0) } ?? answer.body
                if !body.isEmpty {
                    context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
                }
                if answer.dropAfter != nil {
                    // Mid-file: the bytes so far, then the connection closes without the rest.
                    context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(capacity: 0)))))
                        .whenComplete { _ in context.close(promise: nil) }
                } else {
                    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                }
                self.head = nil
            }
        }
    }
}
