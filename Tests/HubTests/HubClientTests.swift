import Foundation
import Hub
import Tensors
import TestSupport
import Testing

/// The hub client against `HubTestServer` on the loopback address: downloads into huggingface_hub's layout, revisions,
/// resumed downloads, hashes, missing files and repositories, offline use, the token.
@Suite(.serialized) struct HubClientTests {
    let commit = String(repeating: "1", count: 40), tagged = String(repeating: "2", count: 40)
    let config = Data(#"{"architecture": "vit_tiny"}"#.utf8)
    let weights = Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    let otherWeights = Data((0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7) })

    func withServer(_ body: (HubTestServer, URL) throws -> Void) throws {
        let server = try HubTestServer()
        defer { server.shutdown() }
        server.add(
            "org/tiny", refs: ["main": commit, "v1": tagged],
            files: [
                commit: ["config.json": config, "model.safetensors": weights],
                tagged: ["config.json": config, "model.safetensors": otherWeights]
            ])
        let root = try temporaryFolder("swiftvit-hub-client")
        defer { try? FileManager.default.removeItem(at: root) }
        try body(server, root)
    }

    func client(_ server: HubTestServer, _ root: URL, _ extra: [String: String] = [:]) -> HubClient {
        HubClient(environment: ["HF_ENDPOINT": server.endpoint, "HF_HUB_CACHE": root.path].merging(extra) { _, new in new })
    }

    @Test func downloadsIntoHuggingFaceHubsLayout() throws {
        try withServer { server, root in
            let model = try #require(HubModelName("org/tiny"))
            let folder = try client(server, root).modelSnapshot(model)
            let repo = root.appendingPathComponent("models--org--tiny")
            #expect(folder.path == repo.appendingPathComponent("snapshots/\(commit)").path)
            #expect(try Data(contentsOf: folder.appendingPathComponent("model.safetensors")) == weights)
            #expect(try Data(contentsOf: folder.appendingPathComponent("config.json")) == config)
            // Links into blobs/, relative; the LFS file's blob named by its SHA-256; refs/main names the commit.
            let link = try FileManager.default.destinationOfSymbolicLink(atPath: folder.appendingPathComponent("model.safetensors").path)
            #expect(link == "../../blobs/\(HubTestServer.sha256(weights))")
            #expect(try String(contentsOf: repo.appendingPathComponent("refs/main"), encoding: .utf8) == commit)
            #expect(!server.requests.contains { $0.contains("auth=") })
            // Again: HEADs only, the blobs are there.
            let before = server.requests.count
            _ = try client(server, root).modelSnapshot(model)
            #expect(server.requests.dropFirst(before).allSatisfy { $0.hasPrefix("HEAD") })
            // A tag pins its own commit; the cache then serves it offline, by tag and by commit, without a request.
            let pinned = try client(server, root).modelSnapshot(try #require(HubModelName("hf-hub:org/tiny@v1")))
            #expect(try Data(contentsOf: pinned.appendingPathComponent("model.safetensors")) == otherWeights)
            let count = server.requests.count
            let offline = client(server, root, ["HF_HUB_OFFLINE": "1"])
            #expect(try offline.modelSnapshot(try #require(HubModelName("org/tiny@v1"))) == pinned)
            #expect(try offline.modelSnapshot(try #require(HubModelName("org/tiny@\(commit)"))) == folder)
            #expect(server.requests.count == count)
            let other = try #require(HubModelName("org/other"))
            let absent = #expect(throws: HubError.self) { try offline.modelSnapshot(other) }
            #expect(absent?.message.contains("HF_HUB_OFFLINE") == true)
        }
    }

    @Test func resumesADroppedDownloadWithARangeRequest() throws {
        try withServer { server, root in
            let model = try #require(HubModelName("org/tiny"))
            server.dropConnection(of: weights, after: 2000)
            let folder = try client(server, root).modelSnapshot(model)
            #expect(try Data(contentsOf: folder.appendingPathComponent("model.safetensors")) == weights)
            #expect(server.requests.contains { $0.hasPrefix("GET /cdn/") && $0.hasSuffix("bytes=2000-") }, "\(server.requests)")
            // A command stopped by a dropped connection keeps the bytes it has; the next one continues from there.
            let other = try #require(HubModelName("org/tiny@v1"))
            server.dropConnection(of: otherWeights, after: 1000)
            let once = client(server, root)
            once.attempts = 1
            let stopped = #expect(throws: HubError.self) { try once.modelSnapshot(other) }
            #expect(stopped?.message.contains("continue from the 1000 bytes") == true, "\(String(describing: stopped))")
            let resumed = try client(server, root).modelSnapshot(other)
            #expect(try Data(contentsOf: resumed.appendingPathComponent("model.safetensors")) == otherWeights)
            #expect(server.requests.last { $0.hasPrefix("GET /cdn/") }?.hasSuffix("bytes=1000-") == true, "\(server.requests)")
        }
    }

    @Test func refusesBytesThatDoNotMatchTheirHash() throws {
        try withServer { server, root in
            server.corrupt(weights)
            let model = try #require(HubModelName("org/tiny"))
            let hub = client(server, root)
            let error = #expect(throws: HubError.self) { try hub.modelSnapshot(model) }
            #expect(error?.message.contains("SHA-256") == true, "\(String(describing: error))")
            let blobs = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("models--org--tiny/blobs").path)
            #expect(!blobs.contains { $0.hasPrefix(HubTestServer.sha256(weights)) }, "\(blobs)")
        }
    }

    @Test func missingFilesRepositoriesAndRevisions() throws {
        try withServer { server, root in
            let hub = client(server, root)
            let (tiny, absent, v9) = try (
                #require(HubModelName("org/tiny")), #require(HubModelName("org/absent")), #require(HubModelName("org/tiny@v9"))
            )
            #expect(try hub.download(tiny, file: "absent.json") == nil)
            let repository = #expect(throws: HubError.self) { try hub.modelSnapshot(absent) }
            #expect(repository?.message.contains("HF_TOKEN") == true)
            let revision = #expect(throws: HubError.self) { try hub.modelSnapshot(v9) }
            #expect(revision?.message.contains("no such revision") == true, "\(String(describing: revision))")
            #expect(throws: HubError.self) { try hub.download(tiny, file: "../escape") }
        }
    }

    @Test func sendsTheTokenToTheHubOnlyAndFallsBackToTheCache() throws {
        try withServer { server, root in
            let model = try #require(HubModelName("org/tiny"))
            let folder = try client(server, root, ["HF_TOKEN": "hf_secret"]).modelSnapshot(model)
            #expect(server.requests.filter { $0.hasPrefix("HEAD") }.allSatisfy { $0.hasSuffix("auth=Bearer hf_secret") })
            #expect(server.requests.filter { $0.contains("/cdn/") }.allSatisfy { !$0.contains("auth=") })
            // A hub that does not answer: what the cache has for the revision.
            let unreachable = HubClient(environment: ["HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": root.path])
            #expect(try unreachable.modelSnapshot(model) == folder)
        }
    }
}
