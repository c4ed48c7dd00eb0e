import Checkpoints
import Foundation
import NN
import Tensors
import ViT

/// DETR's checkpoint layouts: Hugging Face folders as facebook/detr-resnet-50 is published (config.json with
/// `model_type` detr, model.safetensors or pytorch_model.bin in `DetrForObjectDetection`'s names, which `DETR`'s own
/// are), and facebookresearch/detr's `.pth` (`{'model': state_dict}`: `backbone.0.body.*`, `transformer.*` with
/// q, k, v stacked in `in_proj_weight`, `linear1/2`, `norm1-3`, `class_embed`, `bbox_embed`, `query_embed`,
/// `input_proj`), whose names are mapped to Hugging Face's as they are read.
public enum DETRCheckpoint {
    /// A DETR from a Hugging Face folder, or a facebookresearch/detr `.pth` (with a Hugging Face config.json beside
    /// it, when there is one, for the head count and class names, which the tensors do not hold).
    public static func load(_ path: URL) throws -> DETR {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path.path, isDirectory: &isFolder) else { throw CheckpointError(path, "no such file") }
        let folder = isFolder.boolValue ? path : path.deletingLastPathComponent()
        let configURL = folder.appendingPathComponent("config.json")
        let hub = FileManager.default.fileExists(atPath: configURL.path) ? try HubConfig.read(configURL) : nil
        let weights: URL
        if isFolder.boolValue {
            guard
                let found = ["model.safetensors", "pytorch_model.bin", "detr.pth"].map({ folder.appendingPathComponent($0) })
                    .first(where: { FileManager.default.fileExists(atPath: $0.path) })
            else { throw CheckpointError(folder, "holds no DETR weights (model.safetensors, pytorch_model.bin)") }
            weights = found
        } else {
            weights = path
        }
        var tensors =
            weights.pathExtension == "safetensors"
            ? try SafetensorsFile(contentsOf: weights).allTensors() : try PyTorchCheckpoint.read(weights)
        tensors = tensors.filter { !$0.key.hasSuffix("num_batches_tracked") }
        if tensors.keys.contains(where: { $0.hasPrefix("transformer.") }) {
            do { tensors = try fromOriginal(tensors) } catch { throw CheckpointError(weights, "\(error)") }
        }
        guard tensors.keys.contains(where: { $0.hasPrefix(backbonePrefix) }), tensors["class_labels_classifier.weight"] != nil else {
            throw CheckpointError(
                weights,
                "is not a DETR checkpoint (no model.backbone.conv_encoder.* or backbone.0.body.* and no class head): a classifier runs with vit predict"
            )
        }
        var config: DETRConfig
        do {
            config = try Self.config(tensors: tensors, file: hub)
            try readPreprocessing(folder.appendingPathComponent("preprocessor_config.json"), into: &config)
            try config.validate()
        } catch let problem as FieldProblem {
            throw CheckpointError(hub != nil ? configURL : weights, problem.described(naming: huggingFaceKeys))
        } catch {
            throw CheckpointError(weights, "\(error)")
        }
        let model = try Init.withoutDrawing { try DETR(config) }
        do { try model.load(stateDict: tensors, takingStorage: true) } catch { throw CheckpointError(weights, "\(error)") }
        model.eval()
        return model
    }

    /// Writes `model` as a Hugging Face folder that transformers' `DetrForObjectDetection.from_pretrained` and
    /// `DetrImageProcessor` read (config.json, model.safetensors, preprocessor_config.json), each file through a
    /// temporary name; `weights` replaces the model's own (a checkpoint's copy).
    public static func save(_ model: DETR, to folder: URL, weights: [String: Tensor]? = nil) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let c = model.config
        let labels = Dictionary(uniqueKeysWithValues: c.classNames.enumerated().map { ("\($0.offset)", $0.element) })
        let config: [String: Any] = [
            "model_type": "detr", "architectures": ["DetrForObjectDetection"], "d_model": c.width, "encoder_layers": c.encoderLayers,
            "decoder_layers": c.decoderLayers, "encoder_attention_heads": c.heads, "decoder_attention_heads": c.heads,
            "encoder_ffn_dim": c.feedForward, "decoder_ffn_dim": c.feedForward, "num_queries": c.queries, "id2label": labels,
            "label2id": Dictionary(uniqueKeysWithValues: c.classNames.enumerated().map { ($0.element, $0.offset) }),
            "auxiliary_loss": c.auxiliaryLoss, "dropout": c.dropout ?? 0, "activation_function": "relu", "position_embedding_type": "sine",
            "use_timm_backbone": true, "backbone": c.backbone.block == .basic ? "resnet18" : "resnet50", "num_channels": 3
        ]
        let processor: [String: Any] = [
            "image_processor_type": "DetrImageProcessor", "do_resize": true, "do_normalize": true, "do_rescale": true, "do_pad": true,
            "size": ["shortest_edge": c.shortestEdge, "longest_edge": c.longestEdge], "image_mean": c.mean, "image_std": c.std,
            "rescale_factor": 1.0 / 255, "resample": 2, "format": "coco_detection"
        ]
        for (name, object) in [("config.json", config), ("preprocessor_config.json", processor)] {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            try AtomicFile.write(data, to: folder.appendingPathComponent(name))
        }
        try Safetensors.write(
            weights ?? model.stateDict(), metadata: ["format": "pt", "producer": "SwiftViT"],
            to: folder.appendingPathComponent("model.safetensors"))
    }

    /// A `DetrImageProcessor`'s preprocessor_config.json, when there is one: the resize (`size.shortest_edge`,
    /// `size.longest_edge`) and the normalisation (`image_mean`, `image_std`); a field present but malformed is an
    /// error naming it.
    static func readPreprocessing(_ url: URL, into config: inout DETRConfig) throws {
        guard FileManager.default.fileExists(atPath: url.path) else { return }
        let file = try HubConfig.read(url)
        if let size = file["size"]?.object {
            if let v = size["shortest_edge"] {
                config.shortestEdge = try v.int ?? { throw ConfigError(url, "size.shortest_edge is \(v)") }()
            }
            if let v = size["longest_edge"] { config.longestEdge = try v.int ?? { throw ConfigError(url, "size.longest_edge is \(v)") }() }
        }
        for (key, path) in [("image_mean", \DETRConfig.mean), ("image_std", \DETRConfig.std)] {
            guard let raw = file[key] else { continue }
            guard let numbers = raw.numbers, numbers.count == 3, numbers.allSatisfy({ $0.isFinite }) else {
                throw ConfigError(url, "\(key) is \(raw), not three numbers")
            }
            config[keyPath: path] = numbers.map { Float($0) }
        }
        if !config.std.allSatisfy({ $0 > 0 }) { throw ConfigError(url, "image_std \(config.std) is not three positive numbers") }
    }

    /// The names a `FieldProblem` of `DETRConfig` has in a Hugging Face config.json.
    static let huggingFaceKeys = [
        "width": "d_model", "heads": "encoder_attention_heads", "encoderLayers": "encoder_layers", "decoderLayers": "decoder_layers",
        "feedForward": "encoder_ffn_dim", "queries": "num_queries", "classCount": "id2label", "dropout": "dropout"
    ]

    /// Where the backbone's (timm ResNet) tensors live in a DETR's state dict.
    public static let backbonePrefix = "model.backbone.conv_encoder.model."

    /// The configuration: the tensors decide every size they hold (the backbone's shape, the width, the queries, the
    /// classes, the layer counts); config.json adds the heads and the class names (else DETR's 8 heads, names
    /// "class0"...).
    public static func config(tensors: [String: Tensor], file: HubConfig?) throws -> DETRConfig {
        var config = DETRConfig()
        let backboneTensors = Dictionary(
            uniqueKeysWithValues: tensors.filter { $0.key.hasPrefix(backbonePrefix) }.map {
                (String($0.key.dropFirst(backbonePrefix.count)), $0.value)
            })
        config.backbone = try ResNet.config(tensors: backboneTensors, file: HubConfig())
        func shape(_ name: String, rank: Int) throws -> [Int] {
            guard let t = tensors[name], t.rank == rank else { throw ConfigError("\(name) is missing or not of rank \(rank)") }
            return t.shape
        }
        config.width = try shape("model.input_projection.weight", rank: 4)[0]
        config.queries = try shape("model.query_position_embeddings.weight", rank: 2)[0]
        let classes = try shape("class_labels_classifier.weight", rank: 2)[0] - 1
        config.encoderLayers = (0...).first { tensors["model.encoder.layers.\($0).fc1.weight"] == nil } ?? 0
        config.decoderLayers = (0...).first { tensors["model.decoder.layers.\($0).fc1.weight"] == nil } ?? 0
        let ffnName = config.encoderLayers > 0 ? "model.encoder.layers.0.fc1.weight" : "model.decoder.layers.0.fc1.weight"
        config.feedForward = try shape(ffnName, rank: 2)[0]
        config.heads = 8
        config.classNames = (0..<max(classes, 0)).map { "class\($0)" }
        if let file {
            if let heads = file["encoder_attention_heads"]?.int { config.heads = heads }
            if let auxiliary = file["auxiliary_loss"]?.bool { config.auxiliaryLoss = auxiliary }
            if let dropout = file["dropout"]?.double { config.dropout = Float(dropout) }
            if let labels = file["id2label"]?.object {
                for (key, value) in labels {
                    if let index = Int(key), (0..<config.classNames.count).contains(index), let name = value.string {
                        config.classNames[index] = name
                    }
                }
            }
        }
        try config.validate()
        return config
    }

    /// facebookresearch/detr's names -> Hugging Face's: q, k, v split out of `in_proj_weight` / `in_proj_bias`.
    static func fromOriginal(_ tensors: [String: Tensor]) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        let renames: [(String, String)] = [
            ("backbone.0.body.", backbonePrefix), ("input_proj.", "model.input_projection."),
            ("query_embed.weight", "model.query_position_embeddings.weight"), ("transformer.encoder.layers.", "model.encoder.layers."),
            ("transformer.decoder.layers.", "model.decoder.layers."), ("transformer.decoder.norm.", "model.decoder.layernorm."),
            ("class_embed.", "class_labels_classifier."), ("bbox_embed.layers.", "bbox_predictor.layers.")
        ]
        let layerParts: [(String, String)] = [
            ("self_attn.out_proj.", "self_attn.out_proj."), ("multihead_attn.out_proj.", "encoder_attn.out_proj."),
            ("linear1.", "fc1."), ("linear2.", "fc2."), ("norm1.", "self_attn_layer_norm.")
        ]
        for (name, tensor) in tensors {
            guard let (from, to) = renames.first(where: { name.hasPrefix($0.0) }) else {
                throw ConfigError("\(name) is not a facebookresearch/detr tensor")
            }
            let rest = String(name.dropFirst(from.count))
            guard to.hasSuffix("layers.") && !to.hasPrefix("bbox") else {
                out[to + rest] = tensor
                continue
            }
            // "<index>.<part>"; the encoder's norm2 ends its layer, the decoder's norm2 follows cross-attention.
            let index = rest.prefix { $0 != "." }
            let part = String(rest.dropFirst(index.count + 1))
            let layer = to + index + "."
            let decoder = to.contains("decoder")
            if part.hasPrefix("self_attn.in_proj_") || part.hasPrefix("multihead_attn.in_proj_") {
                let attention = part.hasPrefix("self_attn") ? "self_attn" : "encoder_attn"
                let kind = part.hasSuffix("weight") ? "weight" : "bias"
                guard tensor.rank >= 1, tensor.rank <= 2, tensor.shape[0] % 3 == 0 else {
                    throw ConfigError("\(name) of shape \(tensor.shape) does not split into q, k, v")
                }
                let third = tensor.shape[0] / 3
                for (i, projection) in ["q_proj", "k_proj", "v_proj"].enumerated() {
                    out[layer + "\(attention).\(projection).\(kind)"] = tensor.slice(axis: 0, start: i * third, length: third).copy()
                }
                continue
            }
            var mapped: String?
            if let (p, q) = layerParts.first(where: { part.hasPrefix($0.0) }) { mapped = q + part.dropFirst(p.count) }
            if part.hasPrefix("norm2.") { mapped = (decoder ? "encoder_attn_layer_norm." : "final_layer_norm.") + part.dropFirst(6) }
            if part.hasPrefix("norm3."), decoder { mapped = "final_layer_norm." + part.dropFirst(6) }
            guard let mapped else { throw ConfigError("\(name) is not a facebookresearch/detr tensor") }
            out[layer + mapped] = tensor
        }
        return out
    }
}
