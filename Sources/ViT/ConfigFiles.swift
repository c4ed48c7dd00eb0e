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
            let config = try? JSONDecoder().decode(ViTConfig.self, from: data)
        {
            return (
                config,
                [
                    "preset", "imageSize", "patchSize", "width", "depth", "heads", "mlpRatio", "classToken",
                    "pooling", "numClasses", "distillationToken", "positionEmbedding"
                ]
            )
        }
        if json["model_args"] != nil || json["pretrained_cfg"] != nil || json["architecture"] != nil {
            return try timm(json, url)
        }
        if json["hidden_size"] != nil || json["model_type"] != nil { return try huggingFace(json, url) }
        return try note(json, url)
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
        if let backbone = args["backbone"] as? [String: Any] {
            config.backbone = try hybridBackbone(backbone, url)
            fields.insert("backbone")
        }
        if let v = args["pos_embed"] as? String {
            config.positionEmbedding = v == "none" ? .none : .learned
            fields.insert("positionEmbedding")
        }
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
            if let v = try triple(cfg["input_size"], "pretrained_cfg.input_size", url) { config.data.inputSize = v.map { Int($0) } }
            if let v = try triple(cfg["mean"], "pretrained_cfg.mean", url) { config.data.mean = v }
            if let v = try triple(cfg["std"], "pretrained_cfg.std", url) { config.data.std = v }
            if let v = (cfg["crop_pct"] as? NSNumber)?.floatValue { config.data.cropPct = v }
            if let v = cfg["interpolation"] as? String, let i = DataConfig.Interpolation(rawValue: v) { config.data.interpolation = i }
            if int("img_size") == nil, cfg["input_size"] != nil {
                config.imageSize = config.data.inputSize[2]; fields.insert("imageSize")
            }
        }
        if let labels = (json["label_names"] as? [String]) ?? ((json["pretrained_cfg"] as? [String: Any])?["label_names"] as? [String]) {
            config.labels = labels
        }
        return (config, fields)
    }

    /// A hybrid's ResNet as timm-style `model_args.backbone` describes it (the fixtures' and SwiftViT's own files):
    /// only the non-pre-activation ResNetV2 with "same" padding, standardised convolutions and group norm that the
    /// published hybrids use is built; anything else is refused rather than built wrong.
    private static func hybridBackbone(_ json: [String: Any], _ url: URL) throws -> HybridBackbone {
        func refuse(_ why: String) -> ConfigError { ConfigError("\(url.path): model_args.backbone: \(why)") }
        guard let layers = json["layers"] as? [Int] else { throw refuse("no layers") }
        if let name = json["name"] as? String, name != "resnetv2" { throw refuse("'\(name)' is not a ResNetV2") }
        if json["preact"] as? Bool == true { throw refuse("pre-activation backbones are not supported (the hybrids use preact=False)") }
        if let stem = json["stem_type"] as? String, stem != "same" { throw refuse("stem_type '\(stem)' (only 'same')") }
        if let norm = json["norm"] as? String, norm != "GroupNorm" { throw refuse("norm '\(norm)' (only GroupNorm)") }
        var backbone = HybridBackbone(layers: layers)
        if let v = (json["conv_eps"] as? NSNumber)?.floatValue { backbone.convEps = v }
        if let v = json["conv_eps_on_std"] as? Bool { backbone.convEpsOnStandardDeviation = v }
        if let v = (json["norm_groups"] as? NSNumber)?.intValue { backbone.normGroups = v }
        if let v = (json["norm_eps"] as? NSNumber)?.floatValue { backbone.normEps = v }
        if let v = (json["stem_width"] as? NSNumber)?.intValue { backbone.stemWidth = v }
        return backbone
    }

    /// Three numbers (a mean, a std, an input size), or nil when absent. Present but malformed is an error, not a
    /// silent fallback to defaults that would change every prediction.
    private static func triple(_ value: Any?, _ name: String, _ url: URL) throws -> [Float]? {
        guard let value else { return nil }
        guard let numbers = value as? [NSNumber], numbers.count == 3, numbers.allSatisfy({ $0.doubleValue.isFinite }) else {
            throw ConfigError("\(url.path): \(name) is \(value), not three numbers")
        }
        return numbers.map { $0.floatValue }
    }

    private static func huggingFace(_ json: [String: Any], _ url: URL) throws -> (ViTConfig, Set<String>) {
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
        if let act = json["hidden_act"] as? String {
            config.exactGELU = !(act.contains("new") || act.contains("tanh") || act.contains("fast"))
        }
        let architectures = json["architectures"] as? [String] ?? []
        if architectures.contains(where: { $0.contains("WithTeacher") }) {
            config.distillationToken = true; fields.insert("distillationToken")
        }
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
            let p = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        {
            if let v = try triple(p["image_mean"], "image_mean", preprocessor) { config.data.mean = v }
            if let v = try triple(p["image_std"], "image_std", preprocessor) { config.data.std = v }
            if let v = (p["resample"] as? NSNumber)?.intValue { config.data.interpolation = v == 2 ? .bilinear : .bicubic }
        }
        return (config, fields)
    }

    private static func note(_ json: [String: Any], _ url: URL) throws -> (ViTConfig, Set<String>) {
        var config = ViTConfig()
        var fields: Set<String> = []
        if let v = (json["num_heads"] as? NSNumber)?.intValue { config.heads = v; fields.insert("heads") }
        if let v = (json["layer_norm_eps"] as? NSNumber)?.floatValue { config.layerNormEps = v }
        if let v = try triple(json["mean"], "mean", url) { config.data.mean = v }
        if let v = try triple(json["std"], "std", url) { config.data.std = v }
        return (config, fields)
    }

    /// SwiftViT's native `config.json`: timm's hub layout, so that `timm.create_model(architecture, **model_args)`
    /// rebuilds the model: `architecture` is a model name timm registers (the nearest one; our own presets and
    /// custom sizes are not registered there) and `model_args` state every shape, heads included; the data config
    /// goes in `pretrained_cfg`, class names in `label_names`, and the rest of our config under `swiftvit`.
    public static func timmJSON(_ config: ViTConfig, architecture: String? = nil) throws -> Data {
        let name = architecture.flatMap { timmRegistered.contains($0) ? $0 : nil } ?? nearestTimmArchitecture(config)
        var modelArgs: [String: Any] = [
            "img_size": config.imageSize, "patch_size": config.patchSize, "in_chans": config.channels,
            "embed_dim": config.width, "depth": config.depth, "num_heads": config.heads,
            "mlp_ratio": config.mlpRatio, "qkv_bias": config.qkvBias, "class_token": config.classToken,
            "global_pool": config.pooling.rawValue, "no_embed_class": config.noEmbedClass,
            "num_classes": config.numClasses
        ]
        if let fc = config.fcNorm { modelArgs["fc_norm"] = fc }
        if config.positionEmbedding == .none { modelArgs["pos_embed"] = "none" }
        if let size = config.representationSize { modelArgs["representation_size"] = size }
        if let b = config.backbone {
            modelArgs["backbone"] =
                [
                    "name": "resnetv2", "layers": b.layers, "preact": false, "stem_type": "same", "conv": "StdConv2dSame",
                    "conv_eps": b.convEps, "norm": "GroupNorm", "norm_groups": b.normGroups, "norm_eps": b.normEps,
                    "stem_width": b.stemWidth, "conv_eps_on_std": b.convEpsOnStandardDeviation ?? false
                ] as [String: Any]
        }
        var json: [String: Any] = [
            "architecture": name,
            "num_classes": config.numClasses,
            "global_pool": config.pooling.rawValue,
            "model_args": modelArgs,
            "pretrained_cfg": [
                "input_size": config.data.inputSize, "mean": config.data.mean, "std": config.data.std,
                "crop_pct": config.data.cropPct, "crop_mode": "center", "interpolation": config.data.interpolation.rawValue,
                "num_classes": config.numClasses, "first_conv": "patch_embed.proj", "classifier": "head"
            ] as [String: Any],
            "swiftvit": try JSONSerialization.jsonObject(with: JSONEncoder().encode(config))
        ]
        if let labels = config.labels { json["label_names"] = labels }
        return try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    }

    /// The plain ViT and DeiT names timm registers (`timm.list_models('vit_*')` / `'deit_*'`, the standard-shaped
    /// ones); `timm.create_model` rejects any other name.
    public static let timmRegistered: [String] = [
        "vit_tiny_patch16_224", "vit_tiny_patch16_384",
        "vit_small_patch32_224", "vit_small_patch32_384", "vit_small_patch16_224", "vit_small_patch16_384", "vit_small_patch8_224",
        "vit_base_patch32_224", "vit_base_patch32_384", "vit_base_patch16_224", "vit_base_patch16_384", "vit_base_patch8_224",
        "vit_large_patch32_224", "vit_large_patch32_384", "vit_large_patch16_224", "vit_large_patch16_384", "vit_large_patch14_224",
        "vit_huge_patch14_224",
        "deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224", "deit_base_patch16_384",
        "deit_tiny_distilled_patch16_224", "deit_small_distilled_patch16_224", "deit_base_distilled_patch16_224",
        "deit_base_distilled_patch16_384"
    ]

    /// The registered timm model closest to `config`: a distilled DeiT for a distillation token, else a ViT of the
    /// nearest width, then depth, patch size and image size. `model_args` carry the exact shape, so only the
    /// family has to be right.
    public static func nearestTimmArchitecture(_ config: ViTConfig) -> String {
        let family = timmRegistered.filter {
            $0.contains("distilled") == config.distillationToken && ($0.hasPrefix("deit") == config.distillationToken)
        }
        func distance(_ name: String) -> [Int] {
            guard let c = try? ViTConfig.preset(name) else { return [Int.max] }
            return [
                abs(c.width - config.width), abs(c.depth - config.depth), abs(c.patchSize - config.patchSize),
                abs(c.imageSize - config.imageSize)
            ]
        }
        return family.min { distance($0).lexicographicallyPrecedes(distance($1)) } ?? "vit_base_patch16_224"
    }
}
