import Checkpoints
import Foundation
import NN
import Tensors

/// Reading and writing masked autoencoders: facebookresearch/mae's checkpoints (`checkpoint-N.pth`, `{'model': ...}`,
/// timm-style names: `blocks.i.*`, `mask_token`, `decoder_embed.*`, `decoder_blocks.i.*`, `decoder_pred.*`, and HPM's
/// `decoder_*_losspred`), Hugging Face `ViTMAEForPreTraining` folders (`vit.encoder.layer.i.attention.attention.query`,
/// `decoder.decoder_layers.i.*`), and SwiftViT's own runs (the official names in `model.safetensors`, with a
/// `config.json` that timm reads as the encoder and a `swiftvit_mae` entry for the rest).
public enum MAECheckpoint {
    /// Tensor names that belong to an MAE decoder (or HPM's loss predictor), not to the encoder ViT.
    public static func isDecoderTensor(_ name: String) -> Bool {
        name.hasPrefix("decoder_") || name.hasPrefix("decoder.") || name == "mask_token"
    }

    /// Loads the masked autoencoder in `path` (a folder or a weights file). `heads` and `decoderHeads` are needed
    /// where no config.json states them (the official `.pth` files): the encoder's default to timm's 64-wide heads
    /// at the standard widths, the decoder's to 16 (every published MAE decoder).
    public static func load(_ path: URL, heads: Int? = nil, decoderHeads: Int? = nil) throws -> MaskedAutoencoder {
        let (weightsURL, configURL) = try CheckpointLoader.locate(path)
        var tensors = try readTensors(weightsURL)
        let nonFinite = tensors.filter { !$0.value.isAllFinite }.keys.sorted()
        if !nonFinite.isEmpty {
            throw CheckpointError(
                weightsURL, "\(nonFinite.count) tensors hold NaN or infinite values (\(nonFinite.prefix(3).joined(separator: ", ")))")
        }
        let config: MAEConfig
        do {
            config = try self.config(configURL: configURL, tensors: tensors, heads: heads, decoderHeads: decoderHeads)
        } catch {
            throw CheckpointError(weightsURL, "\(error)")
        }
        let model = try Init.withoutDrawing { try MaskedAutoencoder(config) }
        // The fixed tables are recomputed, and must be what the file holds: a model trained with other position
        // embeddings would silently reconstruct garbage.
        for (name, table) in model.positionEmbeddings {
            guard let stored = tensors.removeValue(forKey: name) else { continue }
            let worst = stored.shape == table.shape ? zip(stored.toArray(), table.toArray()).map { abs($0 - $1) }.max() ?? 0 : .infinity
            if worst > 1e-4 {
                throw CheckpointError(
                    weightsURL,
                    "\(name) \(stored.shape) is not the fixed 2-D sin-cos table \(table.shape) an MAE uses (max difference \(worst))")
            }
        }
        do {
            try model.load(stateDict: tensors, takingStorage: true)
        } catch {
            throw CheckpointError(weightsURL, "\(error)")
        }
        model.eval()
        return model
    }

    /// The tensors of a weights file in the official names.
    static func readTensors(_ url: URL) throws -> [String: Tensor] {
        let raw: [String: Tensor]
        if CheckpointLoader.pyTorchExtensions.contains(url.pathExtension) {
            raw = try PyTorchCheckpoint.read(url)
        } else {
            raw = try SafetensorsFile(contentsOf: url).allTensors(matrices: .float32)
        }
        guard raw["decoder_embed.weight"] != nil || raw["decoder.decoder_embed.weight"] != nil else {
            throw CheckpointError(
                url,
                "has no MAE decoder (decoder_embed.weight): an encoder-only checkpoint cannot reconstruct; it fine-tunes with vit train --init"
            )
        }
        guard raw["decoder.decoder_embed.weight"] != nil else { return raw }
        do {
            return try huggingFaceToOfficial(raw)
        } catch {
            throw CheckpointError(url, "Hugging Face ViTMAE layout: \(error)")
        }
    }

    /// `ViTMAEForPreTraining` names -> the official ones. The encoder goes through the ViT map; each decoder layer is
    /// an HF ViT layer under another prefix, so it goes through the same map and comes back as `decoder_blocks.i`.
    static func huggingFaceToOfficial(_ tensors: [String: Tensor]) throws -> [String: Tensor] {
        var encoder: [String: Tensor] = [:], decoderLayers: [String: Tensor] = [:], out: [String: Tensor] = [:]
        for (name, tensor) in tensors {
            if name.hasPrefix("decoder.decoder_layers.") {
                decoderLayers["encoder.layer." + name.dropFirst("decoder.decoder_layers.".count)] = tensor
            } else if name.hasPrefix("decoder.") {
                out[String(name.dropFirst("decoder.".count))] = tensor  // decoder_embed, mask_token, decoder_norm, ...
            } else {
                encoder[name] = tensor
            }
        }
        for (name, tensor) in try HuggingFaceLayout.toTimm(encoder) { out[name] = tensor }
        for (name, tensor) in try HuggingFaceLayout.toTimm(decoderLayers) {
            out[name.hasPrefix("blocks.") ? "decoder_" + name : name] = tensor
        }
        return out
    }

    /// The configuration from config.json (SwiftViT's or Hugging Face's) and the tensors.
    static func config(configURL: URL?, tensors: [String: Tensor], heads: Int?, decoderHeads: Int?) throws -> MAEConfig {
        let file = try configURL.map(HubConfig.read) ?? HubConfig()
        if let native = file["swiftvit_mae"], let configURL {
            do {
                return try JSONDecoder().decode(MAEConfig.self, from: JSONEncoder().encode(native))
            } catch {
                throw ConfigError("\(configURL.path): swiftvit_mae cannot be read (\(error))")
            }
        }
        // The encoder: what the config states, the rest from the tensors (as for any ViT checkpoint).
        var encoder = ViTConfig()
        var stated: Set<String> = []
        if let configURL, !file.json.isEmpty { (encoder, stated) = try ConfigFiles.read(configURL) }
        if let heads { encoder.heads = heads; stated.insert("heads") }
        let encoderTensors = tensors.filter { !isDecoderTensor($0.key) }
        try CheckpointLoader.fillFromTensors(&encoder, stated: stated, tensors: encoderTensors, layout: .timm)
        if file.json.isEmpty {  // an official file alone: MAE normalises with ImageNet's statistics
            (encoder.data.mean, encoder.data.std) = (DataConfig.imagenetMean, DataConfig.imagenetStd)
        }
        var config = MAEConfig(encoder: encoder)

        guard let embed = tensors["decoder_embed.weight"], embed.rank == 2, embed.shape[1] == encoder.width else {
            throw ConfigError("decoder_embed.weight is missing or not [decoder width, \(encoder.width)]")
        }
        config.decoderWidth = embed.shape[0]
        config.decoderDepth =
            Set(
                tensors.keys.compactMap { key -> Int? in
                    guard key.hasPrefix("decoder_blocks.") else { return nil }
                    return Int(key.dropFirst("decoder_blocks.".count).prefix { $0 != "." })
                }
            ).count
        if let fc1 = tensors["decoder_blocks.0.mlp.fc1.weight"], fc1.rank == 2 {
            config.decoderMLPRatio = Float(fc1.shape[0]) / Float(config.decoderWidth)
        }
        config.lossPredictor = tensors.keys.contains { $0.contains("_losspred") }
        config.decoderHeads = decoderHeads ?? file["decoder_num_attention_heads"]?.int ?? 16
        if let ratio = file["mask_ratio"]?.float { config.maskRatio = ratio }
        if let normPix = file["norm_pix_loss"]?.bool { config.normPixLoss = normPix }
        if let pred = tensors["decoder_pred.weight"], pred.shape != [config.patchValues, config.decoderWidth] {
            throw ConfigError(
                "decoder_pred.weight is \(pred.shape), not [\(config.patchValues), \(config.decoderWidth)] (P·P·C values per patch)")
        }
        try config.validate()
        return config
    }

    /// Writes `model` into `folder`: `model.safetensors` (the official names, fixed position embeddings included, as
    /// MAE saves them) and `config.json` (the encoder in timm's layout, so that `vit train --init`, `vit embed` and
    /// timm read the encoder, and `swiftvit_mae` with the whole configuration). Each file goes through a temporary
    /// name and a rename.
    public static func save(_ model: MaskedAutoencoder, to folder: URL, weights: [String: Tensor]? = nil) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var tensors = weights ?? model.stateDict()
        for (name, table) in model.positionEmbeddings { tensors[name] = table }
        try Safetensors.write(
            tensors, metadata: ["format": "pt", "producer": "SwiftViT"], to: folder.appendingPathComponent("model.safetensors"))
        try AtomicFile.write(try configJSON(model.config), to: folder.appendingPathComponent("config.json"))
    }

    static func configJSON(_ config: MAEConfig) throws -> Data {
        var encoder = config.encoder
        encoder.positionEmbedding = .learned  // timm's ViT reads the table as its (trainable) pos_embed
        var file = try ConfigFiles.timmConfig(encoder)
        try file.setNative("swiftvit_mae", config)
        return try file.data()
    }
}
