import Foundation

/// Reading the `config.json` files that travel with published weights, and writing SwiftViT's own (timm's hub
/// layout, which timm reads back).
public enum ConfigFiles {
    /// The configuration a `config.json` describes, if it is one of the known layouts: timm's hub layout
    /// (`architecture`, `model_args`, `pretrained_cfg`), Hugging Face's (`model_type`, `hidden_size`, ...), or the
    /// minimal note beside an npz (`num_heads`, `layer_norm_eps`, `mean`, `std`).
    public static func read(_ url: URL) throws -> (config: ViTConfig, fields: Set<String>) {
        let json: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] else {
                throw ConfigError("\(url.path): not a JSON object")
            }
            json = object
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError("\(url.path): cannot be read as JSON (\(error.localizedDescription))")
        }
        if let native = json["swiftvit"], let data = try? JSONSerialization.data(withJSONObject: native),
           let config = try? JSONDecoder().decode(ViTConfig.self, from: data) {
            return (config, ["preset", "imageSize", "patchSize", "width", "depth", "heads", "mlpRatio", "classToken",
                             "pooling", "numClasses", "distillationToken"])
        }
        if json["model_args"] != nil || json["pretrained_cfg"] != nil || json["architecture"] != nil {
            return try timm(json, url)
        }
        if json["hidden_size"] != nil || json["model_type"] != nil { return huggingFace(json, url) }
        return note(json)
    }

    /// `fields` names what the file stated, so that values it does not state can come from the weights.
    private static func timm(_ json: [String: Any], _ url: URL) throws -> (ViTConfig, Set<String>) {
        let architecture = json["architecture"] as? String ?? ""
        var config = (try? ViTConfig.preset(architecture)) ?? ViTConfig()
        var fields: Set<String> = (try? ViTConfig.preset(architecture)) != nil ? ["preset"] : []
        if architecture.contains("distilled") { config.distillationToken = true; fields.insert("distillationToken") }
        let args = json["model_args"] as? [String: Any] ?? [:]
        func int(_ key: String) -> Int? { (args[key] as? NSNumber)?.intValue }
        func float(_ key: String) -> Float? { (args[key] as? NSNumber)?.floatValue }
        if let v = int("img_size") { config.imageSize = v; fields.insert("imageSize") }
        if let v = int("patch_size") { config.patchSize = v; fields.insert("patchSize") }
        if let v = int("in_chans") { config.channels = v }
        if let v = int("embed_dim") { config.width = v; fields.insert("width") }
        if let v = int("depth") { config.depth = v; fields.insert("depth") }
        if let v = int("num_heads") { config.heads = v; fields.insert("heads") }
        if let v = float("mlp_ratio") { config.mlpRatio = v; fields.insert("mlpRatio") }
        if let v = args["qkv_bias"] as? Bool { config.qkvBias = v }
        if let v = args["class_token"] as? Bool { config.classToken = v; fields.insert("classToken") }
        if let v = args["no_embed_class"] as? Bool { config.noEmbedClass = v }
        if let v = args["fc_norm"] as? Bool { config.fcNorm = v }
        if let v = int("representation_size") { config.representationSize = v }
        if let v = float("drop_path_rate") { config.dropPath = v }
        if let v = args["pos_embed"] as? String { config.positionEmbedding = v == "none" ? .none : .learned }
        if let pool = (args["global_pool"] ?? json["global_pool"]) as? String {
            guard let pooling = ViTConfig.Pooling(rawValue: pool) else {
                throw ConfigError("\(url.path): global_pool '\(pool)' is not supported (token or avg)")
            }
            config.pooling = pooling
            fields.insert("pooling")
        }
        if let v = (json["num_classes"] as? NSNumber)?.intValue ?? int("num_classes") {
            config.numClasses = v
            fields.insert("numClasses")
        }
        if let cfg = json["pretrained_cfg"] as? [String: Any] {
            if let v = cfg["input_size"] as? [Int], v.count == 3 { config.data.inputSize = v }
            if let v = cfg["mean"] as? [Double], v.count == 3 { config.data.mean = v.map(Float.init) }
            if let v = cfg["std"] as? [Double], v.count == 3 { config.data.std = v.map(Float.init) }
            if let v = (cfg["crop_pct"] as? NSNumber)?.floatValue { config.data.cropPct = v }
            if let v = cfg["interpolation"] as? String, let i = DataConfig.Interpolation(rawValue: v) { config.data.interpolation = i }
            if int("img_size") == nil, let v = cfg["input_size"] as? [Int], v.count == 3 { config.imageSize = v[2]; fields.insert("imageSize") }
        }
        if let labels = (json["label_names"] as? [String]) ?? ((json["pretrained_cfg"] as? [String: Any])?["label_names"] as? [String]) {
            config.labels = labels
        }
        return (config, fields)
    }

    private static func huggingFace(_ json: [String: Any], _ url: URL) -> (ViTConfig, Set<String>) {
        var config = ViTConfig()
        var fields: Set<String> = []
        func int(_ key: String) -> Int? { (json[key] as? NSNumber)?.intValue }
        if let v = int("hidden_size") { config.width = v; fields.insert("width") }
        if let v = int("num_hidden_layers") { config.depth = v; fields.insert("depth") }
        if let v = int("num_attention_heads") { config.heads = v; fields.insert("heads") }
        if let v = int("intermediate_size") { config.mlpRatio = Float(v) / Float(config.width); fields.insert("mlpRatio") }
        if let v = int("image_size") { config.imageSize = v; fields.insert("imageSize") }
        if let v = int("patch_size") { config.patchSize = v; fields.insert("patchSize") }
        if let v = int("num_channels") { config.channels = v }
        if let v = json["qkv_bias"] as? Bool { config.qkvBias = v }
        if let v = (json["layer_norm_eps"] as? NSNumber)?.floatValue { config.layerNormEps = v }
        if let act = json["hidden_act"] as? String { config.exactGELU = !(act.contains("new") || act.contains("tanh") || act.contains("fast")) }
        let architectures = json["architectures"] as? [String] ?? []
        if architectures.contains(where: { $0.contains("WithTeacher") }) { config.distillationToken = true; fields.insert("distillationToken") }
        // transformers writes an id2label into every config, a two-entry default even for a headless ViTModel, so
        // it names the classes but does not state that a head exists: the weights decide the class count.
        if let id2label = json["id2label"] as? [String: String] {
            let sorted = id2label.compactMap { key, value in Int(key).map { ($0, value) } }.sorted { $0.0 < $1.0 }
            config.labels = sorted.map(\.1)
            config.numClasses = sorted.count
        }
        // Hugging Face image processors for ViT resize straight to the input size (no crop) with mean = std = 0.5;
        // a preprocessor_config.json beside the weights says otherwise when it exists.
        config.data.cropPct = 1
        config.data.inputSize = [config.channels, config.imageSize, config.imageSize]
        let preprocessor = url.deletingLastPathComponent().appendingPathComponent("preprocessor_config.json")
        if let data = try? Data(contentsOf: preprocessor),
           let p = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            if let v = p["image_mean"] as? [Double], v.count == 3 { config.data.mean = v.map(Float.init) }
            if let v = p["image_std"] as? [Double], v.count == 3 { config.data.std = v.map(Float.init) }
            if let v = (p["resample"] as? NSNumber)?.intValue { config.data.interpolation = v == 2 ? .bilinear : .bicubic }
        }
        return (config, fields)
    }

    private static func note(_ json: [String: Any]) -> (ViTConfig, Set<String>) {
        var config = ViTConfig()
        var fields: Set<String> = []
        if let v = (json["num_heads"] as? NSNumber)?.intValue { config.heads = v; fields.insert("heads") }
        if let v = (json["layer_norm_eps"] as? NSNumber)?.floatValue { config.layerNormEps = v }
        if let v = json["mean"] as? [Double], v.count == 3 { config.data.mean = v.map(Float.init) }
        if let v = json["std"] as? [Double], v.count == 3 { config.data.std = v.map(Float.init) }
        return (config, fields)
    }

    /// SwiftViT's native `config.json`: timm's hub layout with the full architecture in `model_args`, the data
    /// config in `pretrained_cfg`, class names in `label_names`, and the rest of our config under `swiftvit`.
    public static func timmJSON(_ config: ViTConfig, architecture: String? = nil) throws -> Data {
        let name = architecture
            ?? ViTConfig.presetNames.first { (try? ViTConfig.preset($0)).map { sameArchitecture($0, config) } ?? false }
            ?? (config.distillationToken ? "deit_base_distilled_patch16_224" : "vit_base_patch16_224")
        var modelArgs: [String: Any] = [
            "img_size": config.imageSize, "patch_size": config.patchSize, "in_chans": config.channels,
            "embed_dim": config.width, "depth": config.depth, "num_heads": config.heads,
            "mlp_ratio": config.mlpRatio, "qkv_bias": config.qkvBias, "class_token": config.classToken,
            "global_pool": config.pooling.rawValue, "no_embed_class": config.noEmbedClass,
        ]
        if let fc = config.fcNorm { modelArgs["fc_norm"] = fc }
        if config.positionEmbedding == .none { modelArgs["pos_embed"] = "none" }
        var json: [String: Any] = [
            "architecture": name,
            "num_classes": config.numClasses,
            "global_pool": config.pooling.rawValue,
            "model_args": modelArgs,
            "pretrained_cfg": [
                "input_size": config.data.inputSize, "mean": config.data.mean, "std": config.data.std,
                "crop_pct": config.data.cropPct, "crop_mode": "center", "interpolation": config.data.interpolation.rawValue,
                "num_classes": config.numClasses, "first_conv": "patch_embed.proj", "classifier": "head",
            ] as [String: Any],
            "swiftvit": try JSONSerialization.jsonObject(with: JSONEncoder().encode(config)),
        ]
        if let labels = config.labels { json["label_names"] = labels }
        return try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    }

    private static func sameArchitecture(_ a: ViTConfig, _ b: ViTConfig) -> Bool {
        a.width == b.width && a.depth == b.depth && a.heads == b.heads && a.patchSize == b.patchSize
            && a.imageSize == b.imageSize && a.distillationToken == b.distillationToken && a.mlpRatio == b.mlpRatio
    }
}
