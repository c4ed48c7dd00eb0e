import Hub
import Tensors
import Foundation
import TestSupport
import Testing

/// The Hugging Face cache as `huggingface_hub` lays it out, and the model names that lead into it.
@Suite struct HubCacheTests {
    @Test func namesAsTimmTransformersAndOpenCLIPWriteThem() {
        let timm = HubModelName("hf-hub:timm/vit_base_patch16_224.augreg2_in21k_ft_in1k")
        #expect(timm?.repoId == "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k" && timm?.revision == nil)
        #expect(HubModelName("google/vit-base-patch16-224")?.organisation == "google")
        let pinned = HubModelName("openai/clip-vit-base-patch32@refs/pr/3")
        #expect(pinned?.name == "clip-vit-base-patch32" && pinned?.revision == "refs/pr/3")
        #expect(
            HubModelName("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K@v1.0")?.description == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K@v1.0")
        // Paths and malformed names are not hub names.
        for text in [
            "model.safetensors", "runs/a/b", "/abs/path", "../up/x", "org/..", "org/.hidden", "-org/name", "org/name@", "org/name@../x",
            "org/na me", "org/name@/etc", "org//name", String(repeating: "a", count: 97) + "/x", "org/name@a\u{0}b"
        ] {
            #expect(HubModelName(text) == nil, "\(text)")
        }
    }

    @Test func rootAsHuggingFaceHubDecidesIt() {
        #expect(HubCache(environment: ["HF_HUB_CACHE": "/a", "HF_HOME": "/b"]).root.path == "/a")
        #expect(HubCache(environment: ["HUGGINGFACE_HUB_CACHE": "/old"]).root.path == "/old")
        #expect(HubCache(environment: ["HF_HOME": "/b", "XDG_CACHE_HOME": "/c"]).root.path == "/b/hub")
        #expect(HubCache(environment: ["XDG_CACHE_HOME": "/c"]).root.path == "/c/huggingface/hub")
        #expect(HubCache(environment: [:]).root.path == NSHomeDirectory() + "/.cache/huggingface/hub")
    }

    @Test func snapshotsByBranchTagAndCommit() throws {
        let root = try temporaryFolder("swiftvit-hub-cache")
        defer { try? FileManager.default.removeItem(at: root) }
        let cache = HubCache(root: root)
        let main = String(repeating: "a", count: 40), tagged = String(repeating: "b", count: 40)
        let repo = root.appendingPathComponent("models--google--vit-tiny")
        for (ref, commit) in [("main", main), ("v1", tagged)] {
            try FileManager.default.createDirectory(
                at: repo.appendingPathComponent("snapshots/\(commit)"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: repo.appendingPathComponent("refs"), withIntermediateDirectories: true)
            try commit.write(to: repo.appendingPathComponent("refs/\(ref)"), atomically: true, encoding: .utf8)
        }
        func snapshot(_ text: String) throws -> String? { try cache.snapshot(#require(HubModelName(text)))?.lastPathComponent }
        #expect(try snapshot("google/vit-tiny") == main)
        #expect(try snapshot("hf-hub:google/vit-tiny@v1") == tagged)
        #expect(try snapshot("google/vit-tiny@\(tagged)") == tagged)
        #expect(try snapshot("google/vit-tiny@v2") == nil)
        #expect(try snapshot("google/other") == nil)
        // A ref that holds no commit is named.
        try "not a commit".write(to: repo.appendingPathComponent("refs/bad"), atomically: true, encoding: .utf8)
        #expect(throws: FileError.self) { try snapshot("google/vit-tiny@bad") }

        // A path that exists wins over a hub name; offline, a cached name is its snapshot (with a weights file), and one
        // not cached says how to get it.
        try Data().write(to: repo.appendingPathComponent("snapshots/\(main)/model.safetensors"))
        let offline = HubClient(environment: ["HF_HUB_CACHE": root.path, "HF_HUB_OFFLINE": "1"])
        #expect(try ModelLocation.resolve("google/vit-tiny", client: offline).lastPathComponent == main)
        let missing = #expect(throws: HubError.self) { try ModelLocation.resolve("google/absent@v3", client: offline) }
        #expect(missing?.message.contains("huggingface-cli download google/absent") == true, "\(String(describing: missing))")
        #expect(try ModelLocation.resolve(root.path, client: offline) == URL(fileURLWithPath: root.path))
    }
}
