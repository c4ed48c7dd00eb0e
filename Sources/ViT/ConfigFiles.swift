import Foundation

/// Reading the `config.json` files that travel with published weights, and writing SwiftViT's own (timm's hub
/// layout, which timm reads back).
public enum ConfigFiles {
    /// The configuration a `config.json` describes, if it is one of the known layouts: timm's hub layout
    /// (`architecture`, `model_args`, `pretrained_cfg`), Hugging Face's (`model_type`, `hidden_size`, ...), or the
    /// minimal note beside an npz (`num_heads`, `layer_norm_eps`, `mean`, `std`).
    public static func read(_ url: URL) throws -> (config: ViTConfig, fields: Set<String>) {
        let file = try HubConfig.read(url)
        if let config = file.native("swiftvit", as: ViTConfig.self) {
            return (
                config,
                [
                    "preset", "imageSize", "patchSize", "width", "depth", "heads", "mlpRatio", "classToken",
                    "pooling", "numClasses", "distillationToken", "positionEmbedding"
                ]
            )
        }
        if file["model_args"] != nil || file["pretrained_cfg"] != nil || file["architecture"] != nil {
            return try timm(file, url)
        }
        if file["hidden_size"] != nil || file["model_type"] != nil { return try huggingFace(file, url) }
        return try note(file, url)
    }

    /// `fields` names what the file stated, so that values it does not state can come from the weights.
    private static func timm(_ file: HubConfig, _ url: URL) throws -> (ViTConfig, Set<String>) {
        let architecture = file.architecture ?? ""
        var config = (try? ViTConfig.preset(architecture)) ?? ViTConfig()
        var fields: Set<String> = (try? ViTConfig.preset(architecture)) != nil ? ["preset"] : []
        if architecture.contains("distilled") { config.distillationToken = true; fields.insert("distillationToken") }
        let args = file.modelArgs
        if let v = args["img_size"]?.int { config.imageSize = v; fields.insert("imageSize") }
        if let v = args["patch_size"]?.int { config.patchSize = v; fields.insert("patchSize") }
        if let v = args["in_chans"]?.int { config.channels = v }
        if let v = args["embed_dim"]?.int { config.width = v; fields.insert("width") }
        if let v = args["depth"]?.int { config.depth = v; fields.insert("depth") }
        if let v = args["num_heads"]?.int { config.heads = v; fields.insert("heads") }
        if let v = args["mlp_ratio"]?.float { config.mlpRatio = v; fields.insert("mlpRatio") }
        if let v = args["qkv_bias"]?.bool { config.qkvBias = v }
        if let v = args["class_token"]?.bool { config.classToken = v; fields.insert("classToken") }
        if let v = args["no_embed_class"]?.bool { config.noEmbedClass = v }
        if let v = args["fc_norm"]?.bool { config.fcNorm = v }
        if let v = args["representation_size"]?.int { config.representationSize = v }
        if let v = args["drop_path_rate"]?.float { config.dropPath = v }
        if let backbone = args["backbone"]?.object {
            config.backbone = try hybridBackbone(backbone, url)
            fields.insert("backbone")
        }
        if let v = args["pos_embed"]?.string {
            config.positionEmbedding = v == "none" ? .none : .learned
            fields.insert("positionEmbedding")
        }
        if let pool = args["global_pool"]?.string ?? file.globalPool {
            guard let pooling = ViTConfig.Pooling(rawValue: pool) else {
                throw ConfigError("\(url.path): global_pool '\(pool)' is not supported (token or avg)")
            }
            config.pooling = pooling
            fields.insert("pooling")
        }
        if let v = file.numClasses ?? args["num_classes"]?.int {
            config.numClasses = v
            fields.insert("numClasses")
        }
        if file["pretrained_cfg"] != nil {
            let cfg = file.pretrainedConfig
            try config.data.read(pretrainedConfig: cfg, in: url)
            if args["img_size"] == nil, cfg["input_size"] != nil {
                config.imageSize = config.data.inputSize[2]; fields.insert("imageSize")
            }
        }
        if let labels = file.labelNames ?? file.pretrainedConfig["label_names"]?.array?.compactMap(\.string) {
            config.labels = labels
        }
        return (config, fields)
    }

    /// A hybrid's ResNet as timm-style `model_args.backbone` describes it (the fixtures' and SwiftViT's own files):
    /// only the non-pre-activation ResNetV2 with "same" padding, standardised convolutions and group norm that the
    /// published hybrids use is built; anything else is refused rather than built wrong.
    private static func hybridBackbone(_ json: [String: JSONValue], _ url: URL) throws -> HybridBackbone {
        func refuse(_ why: String) -> ConfigError { ConfigError("\(url.path): model_args.backbone: \(why)") }
        guard let values = json["layers"]?.array, case let layers = values.compactMap(\.int), layers.count == values.count else {
            throw refuse("no layers")
        }
        if let name = json["name"]?.string, name != "resnetv2" { throw refuse("'\(name)' is not a ResNetV2") }
        if json["preact"]?.bool == true { throw refuse("pre-activation backbones are not supported (the hybrids use preact=False)") }
        if let stem = json["stem_type"]?.string, stem != "same" { throw refuse("stem_type '\(stem)' (only 'same')") }
        if let norm = json["norm"]?.string, norm != "GroupNorm" { throw refuse("norm '\(norm)' (only GroupNorm)") }
        var backbone = HybridBackbone(layers: layers)
        if let v = json["conv_eps"]?.float { backbone.convEps = v }
        if let v = json["conv_eps_on_std"]?.bool { backbone.convEpsOnStandardDeviation = v }
        if let v = json["norm_groups"]?.int { backbone.normGroups = v }
        if let v = json["norm_eps"]?.float { backbone.normEps = v }
        if let v = json["stem_width"]?.int { backbone.stemWidth = v }
        return backbone
    }

    /// Three numbers (a mean, a std), or nil when absent. Present but malformed is an error, not a silent fallback
    /// to defaults that would change every prediction.
    static func triple(_ value: JSONValue?, _ name: String, _ url: URL) throws -> [Float]? {
        guard let value else { return nil }
        guard let numbers = value.numbers, numbers.count == 3, numbers.allSatisfy({ $0.isFinite }) else {
            throw ConfigError(url, "\(name) is \(value), not three numbers")
        }
        return numbers.map { Float($0) }
    }

    /// An input size [channels, height, width] of whole numbers, or nil when absent.
    static func inputSize(_ value: JSONValue?, _ name: String, _ url: URL) throws -> [Int]? {
        guard let value else { return nil }
        guard let array = value.array, case let sizes = array.compactMap(\.int), sizes.count == 3, array.count == 3 else {
            throw ConfigError(url, "\(name) is \(value), not three whole numbers")
        }
        return sizes
    }

    private static func huggingFace(_ file: HubConfig, _ url: URL) throws -> (ViTConfig, Set<String>) {
        var config = ViTConfig()
        var fields: Set<String> = []
        func int(_ key: String) -> Int? { file[key]?.int }
        if let v = int("hidden_size") { config.width = v; fields.insert("width") }
        if let v = int("num_hidden_layers") { config.depth = v; fields.insert("depth") }
        if let v = int("num_attention_heads") { config.heads = v; fields.insert("heads") }
        if let v = int("intermediate_size") { config.mlpRatio = Float(v) / Float(config.width); fields.insert("mlpRatio") }
        if let v = int("image_size") { config.imageSize = v; fields.insert("imageSize") }
        if let v = int("patch_size") { config.patchSize = v; fields.insert("patchSize") }
        if let v = int("num_channels") { config.channels = v }
        if let v = file["qkv_bias"]?.bool { config.qkvBias = v }
        if let v = file["layer_norm_eps"]?.float { config.layerNormEps = v }
        if let act = file["hidden_act"]?.string {
            config.exactGELU = !(act.contains("new") || act.contains("tanh") || act.contains("fast"))
        }
        let architectures = file["architectures"]?.array?.compactMap(\.string) ?? []
        if architectures.contains(where: { $0.contains("WithTeacher") }) {
            config.distillationToken = true; fields.insert("distillationToken")
        }
        // transformers writes an id2label into every config, a two-entry default even for a headless ViTModel, so
        // it names the classes but does not state that a head exists: the weights decide the class count.
        if let id2label = file["id2label"]?.object {
            let sorted = id2label.compactMap { key, value in Int(key).flatMap { k in value.string.map { (k, $0) } } }.sorted { $0.0 < $1.0 }
            config.labels = sorted.map(\.1)
            config.numClasses = sorted.count
        }
        // Hugging Face image processors for ViT resize straight to the input size (no crop) with mean = std = 0.5;
        // a preprocessor_config.json beside the weights says otherwise when it exists.
        config.data.cropPct = 1
        config.data.inputSize = [config.channels, config.imageSize, config.imageSize]
        let preprocessor = url.deletingLastPathComponent().appendingPathComponent("preprocessor_config.json")
        if FileManager.default.fileExists(atPath: preprocessor.path), let p = try? HubConfig.read(preprocessor) {
            if let v = try triple(p["image_mean"], "image_mean", preprocessor) { config.data.mean = v }
            if let v = try triple(p["image_std"], "image_std", preprocessor) { config.data.std = v }
            if let v = p["resample"]?.int { config.data.interpolation = v == 2 ? .bilinear : .bicubic }
        }
        return (config, fields)
    }

    private static func note(_ file: HubConfig, _ url: URL) throws -> (ViTConfig, Set<String>) {
        var config = ViTConfig()
        var fields: Set<String> = []
        if let v = file["num_heads"]?.int { config.heads = v; fields.insert("heads") }
        if let v = file["layer_norm_eps"]?.float { config.layerNormEps = v }
        if let v = try triple(file["mean"], "mean", url) { config.data.mean = v }
        if let v = try triple(file["std"], "std", url) { config.data.std = v }
        return (config, fields)
    }

    /// SwiftViT's native `config.json`: timm's hub layout, so that `timm.create_model(architecture, **model_args)`
    /// rebuilds the model: `architecture` is a model name timm registers (the nearest one; our own presets and
    /// custom sizes are not registered there) and `model_args` state every shape, heads included; the data config
    /// goes in `pretrained_cfg`, class names in `label_names`, and the rest of our config under `swiftvit`.
    public static func timmJSON(_ config: ViTConfig, architecture: String? = nil) throws -> Data {
        try timmConfig(config, architecture: architecture).data()
    }

    /// `timmJSON`'s content as the typed value (what an MAE adds its own entry to).
    public static func timmConfig(_ config: ViTConfig, architecture: String? = nil) throws -> HubConfig {
        var file = HubConfig()
        file.architecture = architecture.flatMap { timmRegistered.contains($0) ? $0 : nil } ?? nearestTimmArchitecture(config)
        file.numClasses = config.numClasses
        file.globalPool = config.pooling.rawValue
        var args = HubConfig.Section()
        args["img_size"] = .int(config.imageSize)
        args["patch_size"] = .int(config.patchSize)
        args["in_chans"] = .int(config.channels)
        args["embed_dim"] = .int(config.width)
        args["depth"] = .int(config.depth)
        args["num_heads"] = .int(config.heads)
        args["mlp_ratio"] = .float(config.mlpRatio)
        args["qkv_bias"] = .bool(config.qkvBias)
        args["class_token"] = .bool(config.classToken)
        args["global_pool"] = .string(config.pooling.rawValue)
        args["no_embed_class"] = .bool(config.noEmbedClass)
        args["num_classes"] = .int(config.numClasses)
        if let fc = config.fcNorm { args["fc_norm"] = .bool(fc) }
        if config.positionEmbedding == .none { args["pos_embed"] = .string("none") }
        if let size = config.representationSize { args["representation_size"] = .int(size) }
        if let b = config.backbone {
            args["backbone"] = .object([
                "name": .string("resnetv2"), "layers": JSONValue(b.layers), "preact": .bool(false), "stem_type": .string("same"),
                "conv": .string("StdConv2dSame"), "conv_eps": .float(b.convEps), "norm": .string("GroupNorm"),
                "norm_groups": .int(b.normGroups), "norm_eps": .float(b.normEps), "stem_width": .int(b.stemWidth),
                "conv_eps_on_std": .bool(b.convEpsOnStandardDeviation ?? false)
            ])
        }
        file.modelArgs = args
        file.setDataConfig(config.data, numClasses: config.numClasses, firstConv: "patch_embed.proj", classifier: "head")
        try file.setNative("swiftvit", config)
        file.labelNames = config.labels
        return file
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
