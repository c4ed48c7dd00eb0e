import Checkpoints
import Foundation
import NN
import Tensors
import ViT

/// CLIP's checkpoint layouts: an open_clip folder, `open_clip_config.json` (`model_cfg`, `preprocess_cfg`) beside
/// `open_clip_model.safetensors` (or `open_clip_pytorch_model.bin`) with OpenAI's tensor names, and Hugging Face's
/// `CLIPModel` folders, read by mapping their names. `vit train-clip` writes the open_clip layout, so open_clip (`create_model_and_transforms("local-dir:OUTPUT")`) reads what it trains.
extension CLIPModel {
    /// Whether `folder` holds a CLIP that `load` reads: an open_clip folder, or a Hugging Face one whose config.json
    /// says `"model_type": "clip"`.
    public static func isCLIPFolder(_ folder: URL) -> Bool {
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("open_clip_config.json").path) { return true }
        return huggingFaceConfig(folder)?["model_type"] as? String == "clip"
    }

    static func huggingFaceConfig(_ folder: URL) -> [String: Any]? {
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("config.json")) else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    /// A CLIP folder: open_clip's (`open_clip_config.json` beside `open_clip_model.safetensors` or
    /// `open_clip_pytorch_model.bin`, OpenAI's names) or Hugging Face's `CLIPModel` (`config.json` beside
    /// `model.safetensors` or `pytorch_model.bin`, `preprocessor_config.json` for the normalisation), whose names are
    /// mapped to OpenAI's as they are read.
    public static func load(_ folder: URL) throws -> CLIPModel {
        let openCLIPConfig = folder.appendingPathComponent("open_clip_config.json")
        let config: CLIPConfig
        let weightFiles: [String]
        var huggingFace = false
        if let data = try? Data(contentsOf: openCLIPConfig) {
            guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw CheckpointError(openCLIPConfig, "is not a JSON object")
            }
            do { config = try CLIPConfig(openCLIP: json) } catch { throw CheckpointError(openCLIPConfig, "\(error)") }
            weightFiles = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors"]
        } else if let json = huggingFaceConfig(folder), json["model_type"] as? String == "clip" {
            var preprocessing: [String: Any]?
            if let data = try? Data(contentsOf: folder.appendingPathComponent("preprocessor_config.json")) {
                preprocessing = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            }
            do {
                config = try CLIPConfig(huggingFace: json, preprocessing: preprocessing)
            } catch {
                throw CheckpointError(folder.appendingPathComponent("config.json"), "\(error)")
            }
            weightFiles = ["model.safetensors", "pytorch_model.bin"]
            huggingFace = true
        } else {
            throw CheckpointError(
                folder, "is not a CLIP folder: no open_clip_config.json, and no config.json of a Hugging Face CLIPModel (model_type clip)")
        }
        do {
            try config.validate()
            try config.checkMemory()
        } catch let problem as FieldProblem {
            // The problem named as the file names its keys.
            throw huggingFace
                ? CheckpointError(folder.appendingPathComponent("config.json"), problem.described(naming: CLIPConfig.huggingFaceKeys))
                : CheckpointError(openCLIPConfig, problem.described(naming: CLIPConfig.openCLIPKeys))
        } catch {
            throw CheckpointError(huggingFace ? folder.appendingPathComponent("config.json") : openCLIPConfig, "\(error)")
        }
        let candidates = weightFiles.map { folder.appendingPathComponent($0) }
        guard let weights = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
            throw CheckpointError(folder, "holds no weights (\(weightFiles.joined(separator: ", ")))")
        }
        var tensors =
            weights.pathExtension == "bin"
            ? try PyTorchCheckpoint.read(weights) : try SafetensorsFile(contentsOf: weights).allTensors(matrices: .float32)
        let model = Init.withoutDrawing { CLIPModel(config) }
        do {
            if huggingFace { tensors = try huggingFaceToOpenAI(tensors) }
            try model.load(stateDict: tensors.filter { !$0.key.hasSuffix("attn_mask") }, takingStorage: true)
        } catch {
            throw CheckpointError(weights, "\(error)")
        }
        model.eval()
        return model
    }

    /// Hugging Face `CLIPModel` names -> OpenAI's: `text_model.*` / `vision_model.*` blocks with separate q, k, v
    /// projections (stacked into `in_proj_weight`), `layer_norm1/2` (`ln_1/2`), `mlp.fc1/fc2` (`c_fc/c_proj`),
    /// `pre_layrnorm` (sic) and `post_layernorm`; the projections are Linear weights [E, W], transposed to OpenAI's
    /// [W, E]. The `position_ids` buffers of older checkpoints are dropped.
    static func huggingFaceToOpenAI(_ tensors: [String: Tensor]) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        let renames = [
            "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
            "text_model.embeddings.position_embedding.weight": "positional_embedding",
            "vision_model.embeddings.class_embedding": "visual.class_embedding",
            "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
            "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding", "logit_scale": "logit_scale"
        ]
        let prefixes = [
            ("text_model.final_layer_norm.", "ln_final."), ("vision_model.pre_layrnorm.", "visual.ln_pre."),
            ("vision_model.post_layernorm.", "visual.ln_post."), ("text_model.encoder.layers.", "transformer.resblocks."),
            ("vision_model.encoder.layers.", "visual.transformer.resblocks.")
        ]
        let blockParts = [
            ("self_attn.out_proj.", "attn.out_proj."), ("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."),
            ("mlp.fc2.", "mlp.c_proj.")
        ]
        var projections: [String: [String: Tensor]] = [:]  // block prefix -> "q_proj.weight" ... -> tensor
        for (name, tensor) in tensors {
            if name.hasSuffix("position_ids") { continue }
            if let renamed = renames[name] {
                out[renamed] = tensor
                continue
            }
            if name == "text_projection.weight" || name == "visual_projection.weight" {
                guard tensor.rank == 2 else { throw CLIPError("\(name) is \(tensor.shape), not [embed, width]") }
                out[name == "text_projection.weight" ? "text_projection" : "visual.proj"] = tensor.transpose(0, 1)
                continue
            }
            guard let (from, to) = prefixes.first(where: { name.hasPrefix($0.0) }) else {
                throw CLIPError("\(name) is not a Hugging Face CLIPModel tensor")
            }
            var rest = String(name.dropFirst(from.count))
            guard to.hasSuffix("resblocks.") else {
                out[to + rest] = tensor
                continue
            }
            let index = rest.prefix { $0 != "." }
            rest = String(rest.dropFirst(index.count + 1))
            let block = to + index + "."
            if rest.hasPrefix("self_attn.q_proj.") || rest.hasPrefix("self_attn.k_proj.") || rest.hasPrefix("self_attn.v_proj.") {
                projections[block, default: [:]][String(rest.dropFirst("self_attn.".count))] = tensor
                continue
            }
            guard let (part, openAI) = blockParts.first(where: { rest.hasPrefix($0.0) }) else {
                throw CLIPError("\(name) is not a Hugging Face CLIPModel tensor")
            }
            out[block + openAI + rest.dropFirst(part.count)] = tensor
        }
        for (block, parts) in projections {
            for kind in ["weight", "bias"] {
                guard let q = parts["q_proj.\(kind)"], let k = parts["k_proj.\(kind)"], let v = parts["v_proj.\(kind)"] else {
                    throw CLIPError("\(block)attention lacks one of its q, k, v projections' \(kind)")
                }
                guard q.shape == k.shape, q.shape == v.shape, q.rank == (kind == "weight" ? 2 : 1) else {
                    throw CLIPError("\(block)attention's q, k, v projection \(kind)s are \(q.shape), \(k.shape), \(v.shape): not one shape")
                }
                out[block + "attn.in_proj_\(kind)"] = Tensor.concat([q, k, v], axis: 0)  // [3W, W] or [3W]
            }
        }
        return out
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
    /// Each field's key in `open_clip_config.json` and in a Hugging Face config.json.
    static let openCLIPKeys = [
        "embedDim": "model_cfg.embed_dim", "imageSize": "vision_cfg.image_size", "patchSize": "vision_cfg.patch_size",
        "visionWidth": "vision_cfg.width", "visionLayers": "vision_cfg.layers", "visionHeadWidth": "vision_cfg.head_width",
        "visionMLPRatio": "vision_cfg.mlp_ratio", "contextLength": "text_cfg.context_length", "vocabSize": "text_cfg.vocab_size",
        "textWidth": "text_cfg.width", "textHeads": "text_cfg.heads", "textLayers": "text_cfg.layers", "mean": "preprocess_cfg.mean",
        "std": "preprocess_cfg.std"
    ]
    static let huggingFaceKeys = [
        "embedDim": "projection_dim", "imageSize": "vision_config.image_size", "patchSize": "vision_config.patch_size",
        "visionWidth": "vision_config.hidden_size", "visionLayers": "vision_config.num_hidden_layers",
        "visionHeadWidth": "vision_config.hidden_size / num_attention_heads",
        "visionMLPRatio": "vision_config.intermediate_size / hidden_size",
        "contextLength": "text_config.max_position_embeddings", "vocabSize": "text_config.vocab_size",
        "textWidth": "text_config.hidden_size",
        "textHeads": "text_config.num_attention_heads", "textLayers": "text_config.num_hidden_layers",
        "mean": "preprocessor_config.json image_mean", "std": "preprocessor_config.json image_std"
    ]

    /// From a Hugging Face `CLIPModel` config.json (`projection_dim`, `text_config`, `vision_config`) and its
    /// `preprocessor_config.json` (`image_mean`, `image_std`). The text tower's MLP must be 4x wide.
    public init(huggingFace json: [String: Any], preprocessing: [String: Any]?) throws {
        self.init()
        let vision = json["vision_config"] as? [String: Any] ?? [:], text = json["text_config"] as? [String: Any] ?? [:]
        func int(_ d: [String: Any], _ key: String, _ fallback: Int) throws -> Int { try Self.integer(d, key) ?? fallback }
        // transformers' defaults where a key is absent (its CLIPTextConfig / CLIPVisionConfig).
        embedDim = try int(json, "projection_dim", 512)
        quickGELU = (text["hidden_act"] as? String ?? "quick_gelu") == "quick_gelu"
        imageSize = try int(vision, "image_size", 224)
        patchSize = try int(vision, "patch_size", 32)
        visionWidth = try int(vision, "hidden_size", 768)
        visionLayers = try int(vision, "num_hidden_layers", 12)
        let visionHeads = try int(vision, "num_attention_heads", 12)
        contextLength = try int(text, "max_position_embeddings", 77)
        vocabSize = try int(text, "vocab_size", 49408)
        textWidth = try int(text, "hidden_size", 512)
        textHeads = try int(text, "num_attention_heads", 8)
        textLayers = try int(text, "num_hidden_layers", 12)
        guard visionHeads > 0, visionWidth % visionHeads == 0, textHeads > 0, textWidth % textHeads == 0 else {
            throw CLIPError("widths \(visionWidth), \(textWidth) do not split into \(visionHeads), \(textHeads) heads")
        }
        visionHeadWidth = visionWidth / visionHeads
        visionMLPRatio = Float(try int(vision, "intermediate_size", 4 * visionWidth)) / Float(visionWidth)
        let textMLP = try int(text, "intermediate_size", 4 * textWidth)
        guard textMLP == 4 * textWidth else { throw CLIPError("the text MLP is \(textMLP) wide, not 4 x \(textWidth): not supported") }
        if (vision["hidden_act"] as? String ?? "quick_gelu") != (text["hidden_act"] as? String ?? "quick_gelu") {
            throw CLIPError(
                "the towers use different activations (\(vision["hidden_act"] ?? "-"), \(text["hidden_act"] ?? "-")): not supported")
        }
        if let m = preprocessing?["image_mean"] as? [Double], m.count == 3 { mean = m.map(Float.init) }
        if let s = preprocessing?["image_std"] as? [Double], s.count == 3 { std = s.map(Float.init) }
    }

    /// This configuration with the image tower shaped as `vit` (patch, width, depth, heads, image size) and the
    /// ViT's normalisation and MLP ratio, for `CLIPModel.loadImageTower(from:)`. The ViT must have a class token and
    /// plain patches (no convolutional backbone), and its GELU be this CLIP's. Its LayerNorms' eps (timm: 1e-6) becomes CLIP's 1e-5.
    public func withImageTower(of vit: ViTConfig) throws -> CLIPConfig {
        guard vit.classToken, !vit.distillationToken, vit.backbone == nil, vit.qkvBias, vit.exactGELU == !quickGELU else {
            throw CLIPError(
                "the image tower takes a ViT with a class token, q/k/v biases, plain patches and \(quickGELU ? "QuickGELU" : "GELU")")
        }
        var c = self
        (c.imageSize, c.patchSize, c.visionWidth, c.visionLayers) = (vit.imageSize, vit.patchSize, vit.width, vit.depth)
        c.visionHeadWidth = vit.width / vit.heads
        c.visionMLPRatio = vit.mlpRatio
        (c.mean, c.std) = (vit.data.mean, vit.data.std)
        return c
    }

    /// open_clip's `open_clip_config.json`: what `init(openCLIP:)` reads back.
    public func openCLIPJSON() -> [String: Any] {
        [
            "model_cfg": [
                "embed_dim": embedDim, "quick_gelu": quickGELU,
                "vision_cfg": [
                    "image_size": imageSize, "patch_size": patchSize, "width": visionWidth, "layers": visionLayers,
                    "head_width": visionHeadWidth, "mlp_ratio": Double(visionMLPRatio)
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

extension CLIPModel {
    /// Starts the image tower from a ViT encoder (a supervised or MAE pre-trained run, any checkpoint SwiftViT reads
    /// as a ViT with a class token): patch embedding, class token, position embeddings, blocks and final norm (as
    /// `ln_post`) are copied; the patch embedding's bias, which CLIP's convolution lacks, is added to the patch
    /// positions' embeddings (the same sums). Not copied: `ln_pre`, which plain ViTs lack (it stays at its
    /// initialisation, a normalisation the copied blocks never saw, so the start is close to but not the encoder's
    /// function), and the projection, which is new. The tower's shape must be the ViT's (`CLIPConfig.withImageTower(of:)`).
    public func loadImageTower(from encoder: [String: Tensor]) throws {
        let c = config
        func take(_ name: String, _ shape: [Int]) throws -> Tensor {
            guard let t = encoder[name] else { throw CLIPError("the encoder has no \(name)") }
            guard t.count == shape.reduce(1, *) else { throw CLIPError("the encoder's \(name) is \(t.shape), the tower needs \(shape)") }
            return t.reshape(shape)
        }
        let d = c.visionWidth, tokens = 1 + c.gridSize * c.gridSize
        var state: [String: Tensor] = [:]
        state["visual.conv1.weight"] = try take("patch_embed.proj.weight", [d, 3, c.patchSize, c.patchSize])
        state["visual.class_embedding"] = try take("cls_token", [d])
        var positions = try take("pos_embed", [tokens, d])  // [1 + N, D]
        if let bias = encoder["patch_embed.proj.bias"] {
            let onPatches = Tensor.concat([Tensor.zeros([1, d]), bias.reshape([1, d]).expand(to: [tokens - 1, d])], axis: 0)
            positions = positions + onPatches
        }
        state["visual.positional_embedding"] = positions
        for i in 0..<c.visionLayers {
            let (from, to) = ("blocks.\(i).", "visual.transformer.resblocks.\(i).")
            for (timm, openAI) in [
                ("norm1", "ln_1"), ("norm2", "ln_2"), ("attn.proj", "attn.out_proj"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")
            ] {
                for kind in ["weight", "bias"] {
                    guard let t = encoder[from + timm + "." + kind] else { throw CLIPError("the encoder has no \(from + timm).\(kind)") }
                    state[to + openAI + "." + kind] = t
                }
            }
            state[to + "attn.in_proj_weight"] = try take(from + "attn.qkv.weight", [3 * d, d])
            state[to + "attn.in_proj_bias"] = try take(from + "attn.qkv.bias", [3 * d])
        }
        state["visual.ln_post.weight"] = try take("norm.weight", [d])
        state["visual.ln_post.bias"] = try take("norm.bias", [d])
        let own = Dictionary(uniqueKeysWithValues: namedParameters())
        for (name, tensor) in state {
            guard let target = own[name], target.shape == tensor.shape else {
                throw CLIPError("\(name): the encoder gives \(tensor.shape), the tower has \(own[name]?.shape ?? [])")
            }
            target.assign(tensor.cast(to: target.dtype))
        }
    }
}
