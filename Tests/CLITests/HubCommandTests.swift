import Hub
import Tensors
import Foundation
import Images
import TestSupport
import Testing

/// `--model ORG/NAME` read from a Hugging Face cache laid out as `huggingface_hub` writes it: files once in `blobs/`
/// (named by their hash), the snapshot's files relative links to them, `refs/main` naming the snapshot.
@Suite struct HubCommandTests {
    @Test func predictsWithAModelNamedByRepoId() throws {
        let root = try temporaryFolder("swiftvit-hub-cli")
        defer { try? FileManager.default.removeItem(at: root) }
        let commit = "0123456789abcdef0123456789abcdef01234567"
        let repo = root.appendingPathComponent("hub/models--tiny-org--vit-p8")
        let snapshot = repo.appendingPathComponent("snapshots/\(commit)")
        for folder in ["blobs", "refs", "snapshots/\(commit)"] {
            try FileManager.default.createDirectory(at: repo.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        let fixture = Fixtures.url("ViTTests", "hf-vit-p8-d64-h4-l2-i32")
        for (i, file) in ["config.json", "model.safetensors"].enumerated() {
            let blob = "blob\(i)"
            try FileManager.default.copyItem(at: fixture.appendingPathComponent(file), to: repo.appendingPathComponent("blobs/\(blob)"))
            try FileManager.default.createSymbolicLink(
                atPath: snapshot.appendingPathComponent(file).path, withDestinationPath: "../../blobs/\(blob)")
        }
        try commit.write(to: repo.appendingPathComponent("refs/main"), atomically: true, encoding: .utf8)
        let image = root.appendingPathComponent("image.png")
        let pixels = (0..<(32 * 32 * 3)).map { UInt8($0 % 251) }
        try PNG.write(RGBImage(width: 32, height: 32, pixels: pixels), to: image)

        let cli = CommandLineTests()
        let environment = ["HF_HOME": root.path, "HF_HUB_OFFLINE": "1"]
        let byName = try cli.vit(["predict", "--model", "tiny-org/vit-p8", "--json", image.path], environment: environment)
        let byPath = try cli.vit(["predict", "--model", snapshot.path, "--json", image.path])
        #expect(byName.status == 0 && !byName.stdout.isEmpty, "\(byName.stderr)")
        #expect(byName.stdout == byPath.stdout)
        let pinned = try cli.vit(["predict", "--model", "hf-hub:tiny-org/vit-p8@\(commit)", "--json", image.path], environment: environment)
        #expect(pinned.stdout == byPath.stdout, "\(pinned.stderr)")
        let absent = try cli.vit(["predict", "--model", "tiny-org/other", image.path], environment: environment)
        #expect(absent.status == 2 && absent.stderr.contains("huggingface-cli download tiny-org/other"), "\(absent.stderr)")
    }
}
