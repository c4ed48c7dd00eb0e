import Checkpoints
import Foundation
import Tensors

/// SwiftViT's own checkpoint folder: `model.safetensors` with timm's names and layouts, and a timm-style
/// `config.json` (architecture, model_args, pretrained_cfg with the data config, label_names). timm reads both.
public enum NativeFormat {
    /// Writes `model` into `folder` (created if needed); each file goes through a temporary name and a rename.
    public static func save(_ model: VisionTransformer, to folder: URL, architecture: String? = nil) throws {
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(folder, "cannot be created: \(error.localizedDescription)")
        }
        let tensors = model.stateDict()
        try Safetensors.write(tensors, metadata: ["format": "pt", "producer": "SwiftViT"],
                              to: folder.appendingPathComponent("model.safetensors"))
        try AtomicFile.write(try ConfigFiles.timmJSON(model.config, architecture: architecture),
                             to: folder.appendingPathComponent("config.json"))
    }
}
