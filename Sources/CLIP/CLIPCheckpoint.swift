import Checkpoints
import Foundation
import NN
import Tensors

/// CLIP's checkpoint layout: an open_clip folder, `open_clip_config.json` (`model_cfg`, `preprocess_cfg`) beside
/// `open_clip_model.safetensors` (or `open_clip_pytorch_model.bin`) with OpenAI's tensor names. `vit train-clip`
/// writes the same layout, so open_clip (`create_model_and_transforms("local-dir:OUTPUT")`) reads what it trains.
extension CLIPModel {
    /// An open_clip folder: `open_clip_config.json` beside `open_clip_model.safetensors` (or
    /// `open_clip_pytorch_model.bin`), OpenAI's names.
    public static func load(_ folder: URL) throws -> CLIPModel {
        let configURL = folder.appendingPathComponent("open_clip_config.json")
        guard let data = try? Data(contentsOf: configURL), let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError(configURL, "no readable open_clip_config.json: not an open_clip CLIP folder")
        }
        let config = try CLIPConfig(openCLIP: json)
        let candidates = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors"].map {
            folder.appendingPathComponent($0)
        }
        guard let weights = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
            throw CheckpointError(folder, "holds no open_clip_model.safetensors or open_clip_pytorch_model.bin")
        }
        let tensors =
            weights.pathExtension == "bin"
            ? try PyTorchCheckpoint.read(weights) : try SafetensorsFile(contentsOf: weights).allTensors(matrices: .float32)
        let model = try Init.withoutDrawing { CLIPModel(config) }
        do {
            try model.load(stateDict: tensors.filter { !$0.key.hasSuffix("attn_mask") }, takingStorage: true)
        } catch {
            throw CheckpointError(weights, "\(error)")
        }
        model.eval()
        return model
    }

    /// Writes `open_clip_config.json` and `open_clip_model.safetensors` into `folder` (each through a temporary
    /// file), from `weights` when given (a checkpoint's copy) or the model's own.
    public func save(to folder: URL, weights: [String: Tensor]? = nil) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let json = try JSONSerialization.data(withJSONObject: config.openCLIPJSON(), options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(json, to: folder.appendingPathComponent("open_clip_config.json"))
        try Safetensors.write(
            weights ?? stateDict(), metadata: ["format": "pt", "producer": "SwiftViT"],
            to: folder.appendingPathComponent("open_clip_model.safetensors"))
    }
}

extension CLIPConfig {
    /// open_clip's `open_clip_config.json`: what `init(openCLIP:)` reads back.
    public func openCLIPJSON() -> [String: Any] {
        [
            "model_cfg": [
                "embed_dim": embedDim, "quick_gelu": quickGELU,
                "vision_cfg": [
                    "image_size": imageSize, "patch_size": patchSize, "width": visionWidth, "layers": visionLayers,
                    "head_width": visionHeadWidth
                ],
                "text_cfg": [
                    "context_length": contextLength, "vocab_size": vocabSize, "width": textWidth, "heads": textHeads,
                    "layers": textLayers
                ]
            ] as [String: Any],
            "preprocess_cfg": ["mean": mean.map(Double.init), "std": std.map(Double.init)]
        ]
    }

    /// A CLIP small enough to train on this CPU from scratch at 32 px: image tower a ViT of patch 4, width 192,
    /// 6 blocks of 3 heads (64 tokens and the class token); text tower width 128, 4 blocks of 4 heads over 32 tokens;
    /// embeddings of 128. GELU (open_clip's default for new models).
    public static func small(imageSize: Int = 32) -> CLIPConfig {
        var c = CLIPConfig()
        c.embedDim = 128
        c.quickGELU = false
        (c.imageSize, c.patchSize, c.visionWidth, c.visionLayers, c.visionHeadWidth) = (imageSize, 4, 192, 6, 64)
        (c.contextLength, c.textWidth, c.textHeads, c.textLayers) = (32, 128, 4, 4)
        return c
    }
}
