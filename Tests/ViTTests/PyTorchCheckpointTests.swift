import Checkpoints
import Foundation
import Tensors
import TestSupport
import Testing
import ViT

/// `torch.save` files in every form real checkpoints come in (`Fixtures/pth-vit-p8-d64-l2-i32`, written by PyTorch
/// 2.15): each loads to the same tensors and gives timm's logits; a pickle that would run a command is refused.
@Suite struct PyTorchCheckpointTests {
    static let folder = "pth-vit-p8-d64-l2-i32"
    func file(_ name: String) -> URL { fixture(Self.folder).appendingPathComponent(name) }

    @Test(arguments: [
        "state_dict.pth", "state_dict_legacy.pth", "deit_style.pth", "lightning_style.ckpt", "state_dict_f16.pth",
        "state_dict_bf16.bin"
    ])
    func everyFormGivesTheReferenceLogits(name: String) throws {
        let model = try CheckpointLoader().load(file(name))
        #expect(model.config.width == 64 && model.config.depth == 2 && model.config.numClasses == 10)
        // The half-precision files hold the float32 weights rounded: exactly those values, and logits that far off.
        let rounding: (Float) -> Float =
            name.contains("bf16") ? { BFloat16.rounded($0) } : name.contains("f16") ? { Float(Float16($0)) } : { $0 }
        let ref = try reference(Self.folder)
        let logits = Autograd.withNoGrad { model(try! ref.tensor("input")) }
        let tolerance: Float = name.contains("bf16") ? 2e-2 : name.contains("f16") ? 2e-3 : 1e-4
        expectWithin(logits, try ref.tensor("logits"), tolerance, "\(name) logits")
        let expected = try PyTorchCheckpoint.read(file("state_dict.pth")), read = try PyTorchCheckpoint.read(file(name))
        #expect(Set(read.keys) == Set(expected.keys))
        for (key, tensor) in expected { #expect(read[key]?.toArray() == tensor.toArray().map(rounding), "\(name): \(key)") }
    }

    /// Views into one storage at offsets, and a transposed (non-contiguous) view, are copied out as they read.
    @Test func viewsAndStridesAreMaterialised() throws {
        let views = try PyTorchCheckpoint.read(file("views.pth")), plain = try PyTorchCheckpoint.read(file("state_dict.pth"))
        for (key, tensor) in plain { #expect(views[key]?.toArray() == tensor.toArray(), "\(key)") }
        let head = plain["head.weight"]!.toArray()  // [10, 64]
        let transposed = try #require(views["extra.transposed"])
        #expect(transposed.shape == [64, 10])
        #expect(transposed.toArray() == (0..<64).flatMap { i in (0..<10).map { head[$0 * 64 + i] } })
        let qView = try #require(views["extra.q_view"])
        #expect(qView.shape == [64, 64])
        let sources = plain.filter { $0.value.count == 12288 }.map { Array($0.value.toArray()[0..<4096]) }
        #expect(sources.contains(qView.toArray()), "the first 64 rows of a qkv weight [192, 64], as a view of its storage")
    }

    @Test func aPickleThatWouldRunACommandIsRefusedAndRunsNothing() throws {
        let marker = URL(fileURLWithPath: "/tmp/pwned-by-pickle")
        try? FileManager.default.removeItem(at: marker)
        #expect { try CheckpointLoader().load(file("malicious.pth")) } throws: { error in
            let text = "\(error)"
            return text.contains("malicious.pth") && text.contains("posix.system") && text.contains("nothing was run")
        }
        #expect(!FileManager.default.fileExists(atPath: marker.path))
    }

    /// What a training script saves beside the weights stays data: the argparse.Namespace is kept inert, the
    /// optimizer state and epoch are read and left.
    @Test func trainingScriptExtrasAreInertData() throws {
        let bytes = try Data(contentsOf: file("deit_style.pth"))
        #expect(bytes.count > 0)
        let tensors = try PyTorchCheckpoint.read(file("deit_style.pth"))
        #expect(tensors["cls_token"]?.shape == [1, 1, 64] && tensors.keys.allSatisfy { !$0.hasPrefix("model.") })
    }

    @Test func truncatedAndForeignFilesSayWhatIsWrong() throws {
        let folder = try temporaryFolder("swiftvit-pth")
        defer { try? FileManager.default.removeItem(at: folder) }
        for name in ["state_dict.pth", "state_dict_legacy.pth"] {
            let data = try Data(contentsOf: file(name))
            let cut = folder.appendingPathComponent("cut-" + name)
            try data.prefix(data.count / 2).write(to: cut)
            #expect { try PyTorchCheckpoint.read(cut) } throws: { "\($0)".contains("cut-\(name)") }
        }
        let text = folder.appendingPathComponent("notes.pth")
        try Data("hello".utf8).write(to: text)
        #expect { try PyTorchCheckpoint.read(text) } throws: { "\($0)".contains("not a PyTorch checkpoint") }
    }

    /// Pickles nested a million deep, past the container limit, or holding a list in itself: errors, not a stack
    /// overflow or an endless walk.
    @Test func deepAndCyclicPicklesAreErrors() throws {
        let folder = try temporaryFolder("swiftvit-pth")
        defer { try? FileManager.default.removeItem(at: folder) }
        let nested = 999_990
        let cases: [(String, [UInt8], String)] = [
            (
                "nested-lists.pth",
                [0x80, 2] + [UInt8](repeating: 0x5D, count: nested) + [UInt8](repeating: 0x61, count: nested - 1) + [0x2E], "magic"
            ),
            ("nested-tuples.pth", [0x80, 2, 0x4E] + [UInt8](repeating: 0x85, count: nested) + [0x2E], "magic"),
            ("too-many.pth", [0x80, 2] + [UInt8](repeating: 0x5D, count: 1_000_001) + [0x2E], "more than 1000000"),
            ("cycle.pth", [0x80, 2, 0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E], "magic")
        ]
        for (name, bytes, reason) in cases {
            let url = folder.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            #expect { try PyTorchCheckpoint.read(url) } throws: { "\($0)".contains(name) && "\($0)".contains(reason) }
        }
    }
}
