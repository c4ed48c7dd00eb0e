import Checkpoints
import Foundation
import Tensors

/// SwiftViT's own checkpoint folder: `model.safetensors` with timm's names and layouts, and a timm-style
/// `config.json` (architecture, model_args, pretrained_cfg with the data config, label_names). timm reads both.
public enum NativeFormat {
    /// Writes `model` into `folder` (created if needed); each file goes through a temporary name and a rename.
    public static func save(_ model: VisionTransformer, to folder: URL, architecture: String? = nil) throws {
        try save(model.stateDict(), config: model.config, to: folder, architecture: architecture)
    }

    /// Writes weights named as `VisionTransformer` names them, with `config` (e.g. the model's, labels added).
    public static func save(_ tensors: [String: Tensor], config: ViTConfig, to folder: URL, architecture: String? = nil) throws {
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(folder, "cannot be created: \(error.localizedDescription)")
        }
        try Safetensors.write(
            tensors, metadata: ["format": "pt", "producer": "SwiftViT"],
            to: folder.appendingPathComponent("model.safetensors"))
        try AtomicFile.write(
            try ConfigFiles.timmJSON(config, architecture: architecture),
            to: folder.appendingPathComponent("config.json"))
    }
}
