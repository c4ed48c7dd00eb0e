import Checkpoints
import Foundation
import NN
import Tensors

/// Builds the right `VisionTransformer` for a checkpoint and loads it: a folder (`model.safetensors` or an `.npz`,
/// with `config.json`) or a single weights file, in any layout `CheckpointLayout` knows.
///
/// The architecture comes from `config.json`, else from `preset`, else from the tensors and explicit options; the
/// tensors' shapes are checked against it. An npz has no head count: it must come from the config, a preset or
/// `heads`.
public struct CheckpointLoader {
    /// A preset name to take the architecture from when there is no config.json.
    public var preset: String?
    /// The number of attention heads (needed for an npz without config).
    public var heads: Int?
    /// Build the model at this image size; position embeddings are resampled from the checkpoint's grid.
    public var imageSize: Int?
    /// The dtype of the weight matrices (`VisionTransformer.convertWeights`): each is converted as it is read, so
    /// a bf16 model never holds a float32 copy of its checkpoint.
    public var weightDType: DType

    public init(preset: String? = nil, heads: Int? = nil, imageSize: Int? = nil, weightDType: DType = .float32) {
        self.preset = preset
        self.heads = heads
        self.imageSize = imageSize
        self.weightDType = weightDType
    }

    /// File name extensions of `torch.save` files.
    static let pyTorchExtensions: Set<String> = ["pth", "pt", "bin", "ckpt"]

    /// The weights file and config file a path names.
    public static func locate(_ path: URL) throws -> (weights: URL, config: URL?) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path.path, isDirectory: &isDirectory) else {
            throw CheckpointError(path, "no such file or folder")
        }
        let folder = isDirectory.boolValue ? path : path.deletingLastPathComponent()
        try refuseOtherKinds(path, isFolder: isDirectory.boolValue)
        let config = folder.appendingPathComponent("config.json")
        let configURL = FileManager.default.fileExists(atPath: config.path) ? config : nil
        if !isDirectory.boolValue { return (path, configURL) }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: path.path).sorted()) ?? []
        if files.contains("model.safetensors") { return (path.appendingPathComponent("model.safetensors"), configURL) }
        if files.contains("checkpoint.safetensors") {
            throw CheckpointError(
                path,
                "holds a vit train checkpoint but no model.safetensors yet: export its weights with `vit convert \(path.path) --weights raw -o FOLDER`"
            )
        }
        // Hugging Face's older hub folders: pytorch_model.bin beside config.json.
        if files.contains("pytorch_model.bin") { return (path.appendingPathComponent("pytorch_model.bin"), configURL) }
        let candidates = files.filter {
            $0.hasSuffix(".safetensors") || $0.hasSuffix(".npz") || pyTorchExtensions.contains(($0 as NSString).pathExtension)
        }
        if candidates.count == 1 { return (path.appendingPathComponent(candidates[0]), configURL) }
        if candidates.count > 1 {
            throw CheckpointError(
                path, "holds several weights files (\(candidates.joined(separator: ", "))) and no model.safetensors: name the one to load")
        }
        throw CheckpointError(
            path,
            "holds no weights: expected model.safetensors, an .npz or a PyTorch file (.pth, .pt, .bin, .ckpt) (found \(files.isEmpty ? "nothing" : files.joined(separator: ", ")))"
        )
    }

    /// What a path is, told before it is parsed as weights: a CLIP (its own commands read it) or a configuration file
    /// given for the weights beside it would otherwise fail deep in a parser with a misleading reason.
    static func refuseOtherKinds(_ path: URL, isFolder: Bool) throws {
        let folder = isFolder ? path : path.deletingLastPathComponent()
        let clipWeights = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        let isOpenCLIP =
            FileManager.default.fileExists(atPath: folder.appendingPathComponent("open_clip_config.json").path)
            && (isFolder || clipWeights.contains(path.lastPathComponent))
        let config = folder.appendingPathComponent("config.json")
        let isHuggingFaceCLIP =
            FileManager.default.fileExists(atPath: config.path)
            && (try? HubConfig.read(config))?["model_type"]?.string?.hasPrefix("clip") == true
        if isOpenCLIP || isHuggingFaceCLIP {
            throw CheckpointError(
                path,
                "is a CLIP model (\(isOpenCLIP ? "open_clip" : "Hugging Face CLIPModel")), not an image classifier: classify with `vit zeroshot --model \(folder.path)`, embed with `vit embed`, evaluate with `vit eval --zeroshot`"
            )
        }
        guard !isFolder else { return }
        // A weights file starts with a length (safetensors), "PK" (zip: .npz, .pth) or a pickle opcode, never with "{".
        let head = (try? FileHandle(forReadingFrom: path)).flatMap { handle -> Data? in
            defer { try? handle.close() }
            return try? handle.read(upToCount: 1)
        }
        if path.pathExtension == "json" || head == Data("{".utf8) {
            throw CheckpointError(
                path, "is a JSON file, not weights: give the folder that holds it (--model \(folder.path)) or the weights file beside it")
        }
    }

    /// Reads the weights in timm's names and layout, with the layout they came in; tensors of rank 2 and more (in
    /// timm's layout) in `matrices` dtype.
    public static func readWeights(_ url: URL, matrices: DType = .float32) throws -> (tensors: [String: Tensor], layout: CheckpointLayout) {
        func unknownLayout(_ names: [String]) -> CheckpointError {
            CheckpointError(
                url,
                "tensor names match no known ViT layout (timm, Hugging Face, vision_transformer or big_vision npz); first names: \(names.prefix(5).joined(separator: ", "))"
            )
        }
        var raw: [String: Tensor]
        let layout: CheckpointLayout?
        if url.pathExtension == "npz" {
            raw = try Npz.read(url) { names in
                if CheckpointLayout.detect(names) == nil { throw unknownLayout(names.sorted()) }
            }
            layout = CheckpointLayout.detect(raw.keys)
        } else if Self.pyTorchExtensions.contains(url.pathExtension) {
            raw = try PyTorchCheckpoint.read(url)
            layout = CheckpointLayout.detect(raw.keys)
        } else {
            let file = try SafetensorsFile(contentsOf: url)
            layout = CheckpointLayout.detect(file.entries.keys)
            guard layout != nil else { throw unknownLayout(file.names) }
            // timm's and Hugging Face's tensors have the ranks they will have in the model, so each can be converted
            // as it is read; the JAX layouts reshape some (attention biases are [heads, head_dim] in the file).
            let keepsRanks = layout == .timm || layout == .huggingFace
            raw = try file.allTensors(matrices: keepsRanks ? matrices : .float32)
        }
        guard let layout else { throw unknownLayout(raw.keys.sorted()) }
        do {
            var tensors = try layout.toTimm(raw)
            raw.removeAll()
            for (name, tensor) in tensors where tensor.rank >= 2 && tensor.dtype != matrices {
                tensors[name] = tensor.converted(to: matrices)
            }
            return (tensors, layout)
        } catch {
            throw CheckpointError(url, "\(layout) layout: \(error)")
        }
    }

    /// Any model a checkpoint holds: a timm ResNet (`conv1.weight`, `layer1.0...`) or, in every layout `load` reads,
    /// a ViT.
    public func loadModel(_ path: URL) throws -> any ImageModel {
        let (weightsURL, configURL) = try Self.locate(path)
        guard let tensors = try Self.resNetTensors(weightsURL) else { return try load(path) }
        let nonFinite = tensors.filter { !$0.value.isAllFinite }.keys.sorted()
        if !nonFinite.isEmpty {
            throw CheckpointError(
                weightsURL, "\(nonFinite.count) tensors hold NaN or infinite values (\(nonFinite.prefix(3).joined(separator: ", ")))")
        }
        let file = try configURL.map(HubConfig.read) ?? HubConfig()
        do {
            let model = try ResNet.load(tensors: tensors, file: file, url: configURL)
            if let imageSize, imageSize != model.config.imageSize {
                var config = model.config
                config.imageSize = imageSize  // a convnet takes any size; the data config follows
                config.data.inputSize = [3, imageSize, imageSize]
                try config.validate()
                try MemoryEstimate.checkInference(.resnet(config))
                let resized = try Init.withoutDrawing { try ResNet(config) }
                try resized.load(stateDict: model.stateDict(), takingStorage: true)
                resized.eval()
                return resized
            }
            return model
        } catch let error as CheckpointError {
            throw error
        } catch let error as MemoryEstimate.TooLarge {
            throw CheckpointError(configURL ?? weightsURL, "\(error)")
        } catch let error as ConfigError {
            throw CheckpointError(error.file ?? configURL ?? weightsURL, error.problem)  // named by the configuration's file
        } catch {
            throw CheckpointError(weightsURL, "\(error)")
        }
    }

    /// Whether the checkpoint at `path` (a file or a folder) is a timm ResNet, from its tensor names alone.
    public static func holdsResNet(_ path: URL) throws -> Bool {
        try isResNet(try locate(path).weights)
    }

    /// A timm ResNet's tell-tale names (the stem and the first block), read without the tensors' bytes.
    static func isResNet(_ url: URL) throws -> Bool {
        func tellTale(_ names: some Collection<String>) -> Bool {
            names.contains("conv1.weight") && names.contains("layer1.0.conv1.weight")
        }
        if url.pathExtension == "npz" { return false }
        if pyTorchExtensions.contains(url.pathExtension) { return tellTale(try PyTorchCheckpoint.tensorNames(url)) }
        return tellTale(try SafetensorsFile(contentsOf: url).entries.keys)
    }

    /// A timm ResNet's tensors, or nil for any other checkpoint (whose tensors the ViT loader then reads, once).
    static func resNetTensors(_ url: URL) throws -> [String: Tensor]? {
        guard try isResNet(url) else { return nil }
        if pyTorchExtensions.contains(url.pathExtension) { return try PyTorchCheckpoint.read(url) }
        return try SafetensorsFile(contentsOf: url).allTensors(matrices: .float32)
    }

    public func load(_ path: URL) throws -> VisionTransformer {
        let (config, read, weightsURL) = try self.read(path)
        // An MAE (or HPM) checkpoint loads as its encoder: a classifier has no place for a decoder.
        var tensors = read.filter { !MAECheckpoint.isDecoderTensor($0.key) }
        // The checkpoint's tensors become the parameters: nothing is drawn only to be overwritten, nothing copied.
        let model = try Init.withoutDrawing { try VisionTransformer(config) }
        do {
            try model.load(stateDict: tensors, takingStorage: true)
        } catch {
            throw CheckpointError(weightsURL, "\(error)")
        }
        tensors.removeAll()
        model.convertWeights(to: weightDType)  // what was not converted as read (a resampled pos_embed)
        model.eval()
        StoragePool.trim()  // the parameters never drawn, and the reading's scratch
        return model
    }

    /// The architecture and the tensors of a checkpoint, in timm's names, at `imageSize` (position embeddings
    /// resampled), without building a model: what fine-tuning starts from (`vit train --init`), which keeps the
    /// tensors that fit the model it builds. Tensors that no ViT has (an MAE decoder, say) are left in.
    public func read(_ path: URL) throws -> (config: ViTConfig, tensors: [String: Tensor], weights: URL) {
        let (weightsURL, configURL) = try Self.locate(path)
        var (tensors, layout) = try Self.readWeights(weightsURL, matrices: weightDType)
        // A NaN or infinite weight makes every prediction NaN, silently: refuse the file instead.
        let nonFinite = tensors.filter { !$0.value.isAllFinite }.keys.sorted()
        if !nonFinite.isEmpty {
            throw CheckpointError(
                weightsURL,
                "\(nonFinite.count) tensors hold NaN or infinite values (\(nonFinite.prefix(3).joined(separator: ", "))\(nonFinite.count > 3 ? ", ..." : "")): a diverged or damaged checkpoint"
            )
        }
        var (config, stated) = try baseConfig(configURL)
        if let heads {
            if let configURL, stated.contains("heads"), config.heads != heads {
                throw CheckpointError(weightsURL, "--heads \(heads) contradicts \(configURL.path), which says \(config.heads) heads")
            }
            config.heads = heads
            stated.insert("heads")
        }
        do {
            try Self.fillFromTensors(&config, stated: stated, tensors: tensors, layout: layout)
        } catch let error as ConfigError {
            throw CheckpointError(weightsURL, configURL.map { "does not fit \($0.path): \(error)" } ?? "\(error)")
        }
        // The position-embedding grid of the checkpoint, then the size to build at.
        let checkpointGrid = config.gridSize
        if let imageSize { config.imageSize = imageSize; config.data.inputSize = [config.channels, imageSize, imageSize] }
        do {
            try config.validate()
            try MemoryEstimate.checkInference(.vit(config))
        } catch {
            throw CheckpointError(configURL ?? weightsURL, "configuration: \(error)")
        }
        if let pos = tensors["pos_embed"], config.gridSize != checkpointGrid {
            let prefix = config.noEmbedClass ? 0 : config.prefixTokens
            tensors["pos_embed"] = PositionEmbeddings.resample(
                pos, prefixTokens: prefix,
                from: (checkpointGrid, checkpointGrid),
                to: (config.gridSize, config.gridSize))
        }
        return (config, tensors, weightsURL)
    }

    private func baseConfig(_ url: URL?) throws -> (ViTConfig, Set<String>) {
        if let url {
            let (config, stated) = try ConfigFiles.read(url)
            if let preset, stated.contains("preset") {
                // An option that cannot apply is refused, never ignored.
                throw ConfigError("\(url.path) names the architecture itself: --arch \(preset) cannot apply to it (drop --arch)")
            }
            if let preset {
                // A preset fills what a minimal config leaves out.
                var base = try ViTConfig.preset(preset)
                base.heads = stated.contains("heads") ? config.heads : base.heads
                base.layerNormEps = config.layerNormEps
                base.data.mean = config.data.mean
                base.data.std = config.data.std
                return (base, stated.union(["preset", "heads"]))
            }
            return (config, stated)
        }
        if let preset { return (try ViTConfig.preset(preset), ["preset", "heads"]) }
        return (ViTConfig(), [])
    }

    /// Takes from the tensors what the config did not state, and checks what it did state against them.
    static func fillFromTensors(
        _ config: inout ViTConfig, stated: Set<String>, tensors: [String: Tensor],
        layout: CheckpointLayout
    ) throws {
        var problems: [String] = []
        func settle<T: Equatable>(_ field: String, _ keyPath: WritableKeyPath<ViTConfig, T>, _ fromTensors: T?) {
            guard let fromTensors else { return }
            if stated.contains(field) || stated.contains("preset"), config[keyPath: keyPath] != fromTensors {
                problems.append("\(field) is \(config[keyPath: keyPath]) in the configuration but \(fromTensors) in the weights")
            } else {
                config[keyPath: keyPath] = fromTensors
            }
        }
        guard let patch = tensors["patch_embed.proj.weight"], patch.rank == 4 else {
            throw ConfigError("no patch embedding (patch_embed.proj.weight [D, C, P, P]) among the weights")
        }
        guard patch.shape.allSatisfy({ $0 > 0 }), patch.shape[2] == patch.shape[3] else {
            throw ConfigError("patch_embed.proj.weight has shape \(patch.shape), not [D, C, P, P] with square, non-empty patches")
        }
        // Every other tensor whose shape is read here: its rank first (a value is indexed below).
        for (name, rank) in [
            ("pos_embed", 3), ("blocks.0.mlp.fc1.weight", 2), ("head.weight", 2), ("pre_logits.fc.weight", 2),
            ("cls_token", 3), ("dist_token", 3)
        ] {
            if let t = tensors[name], t.rank != rank || t.shape.contains(0) && name != "head.weight" {
                throw ConfigError("\(name) has shape \(t.shape), expected \(rank) non-empty axes")
            }
        }
        // A hybrid: the ResNet's stages from the tensor names, the image channels from its stem.
        if let stem = tensors["patch_embed.backbone.stem.conv.weight"] {
            guard stem.rank == 4, !stem.shape.contains(0) else {
                throw ConfigError("patch_embed.backbone.stem.conv.weight has shape \(stem.shape)")
            }
            let prefix = "patch_embed.backbone.stages."
            var blocks: [Int: Set<Int>] = [:]
            for key in tensors.keys where key.hasPrefix(prefix) {
                let parts = key.dropFirst(prefix.count).split(separator: ".")
                if parts.count > 2, let stage = Int(parts[0]), parts[1] == "blocks", let block = Int(parts[2]) {
                    blocks[stage, default: []].insert(block)
                }
            }
            let layers = (0..<blocks.count).map { blocks[$0]?.count ?? 0 }
            if stated.contains("backbone"), config.backbone?.layers != layers {
                problems.append("the configuration's backbone has layers \(config.backbone?.layers ?? []), the weights \(layers)")
            }
            var backbone = config.backbone ?? HybridBackbone(layers: layers)
            backbone.layers = layers
            backbone.stemWidth = stem.shape[0]
            if layout == .vitJax && !stated.contains("backbone") {
                // The original R50+ViT standardises as its JAX StdConv: (w - mean) / (std + 1e-5).
                backbone.convEps = 1e-5
                backbone.convEpsOnStandardDeviation = true
            }
            config.backbone = backbone
        } else if config.backbone != nil {
            problems.append("the configuration describes a hybrid's backbone, the weights have none")
            config.backbone = nil
        }
        settle("width", \.width, patch.shape[0])
        // No weight's shape records the number of heads. timm's standard ViTs all use 64-wide heads; for another
        // width the count is a guess that would change every logit, so it must be stated.
        if !stated.contains("heads") && !stated.contains("preset") {
            guard let heads = ViTConfig.standardHeads[config.width] else {
                throw ConfigError(
                    "nothing states the number of attention heads, and width \(config.width) is not one of the standard ViT widths (192, 384, 768, 1024, 1280, with 64-wide heads): give --heads, or --arch with a preset"
                )
            }
            config.heads = heads
        }
        settle("patchSize", \.patchSize, patch.shape[2])
        config.channels = tensors["patch_embed.backbone.stem.conv.weight"]?.shape[1] ?? patch.shape[1]
        let depth = Set(
            tensors.keys.compactMap { key -> Int? in
                guard key.hasPrefix("blocks.") else { return nil }
                return Int(key.dropFirst(7).prefix { $0 != "." })
            }
        ).count
        settle("depth", \.depth, depth)
        if let fc1 = tensors["blocks.0.mlp.fc1.weight"] { settle("mlpRatio", \.mlpRatio, Float(fc1.shape[0]) / Float(patch.shape[0])) }
        config.qkvBias = tensors["blocks.0.attn.qkv.bias"] != nil
        settle("classToken", \.classToken, tensors["cls_token"] != nil)
        settle("distillationToken", \.distillationToken, tensors["dist_token"] != nil)
        settle("numClasses", \.numClasses, tensors["head.weight"]?.shape[0] ?? 0)
        if let pre = tensors["pre_logits.fc.weight"] { config.representationSize = pre.shape[0] }
        if tensors["fc_norm.weight"] != nil {
            if !stated.contains("pooling") { config.pooling = .avg }
            config.fcNorm = true
        } else if tensors["norm.weight"] != nil && config.pooling == .avg {
            config.fcNorm = false
        }
        if layout == .bigVision { config.noEmbedClass = true }
        if !config.classToken && !stated.contains("pooling") { config.pooling = .avg }
        if let pos = tensors["pos_embed"] {
            let positions = pos.shape[1] - (config.noEmbedClass ? 0 : config.prefixTokens)
            let side = positions > 0 ? Int(Double(positions).squareRoot().rounded()) : 0
            if side == 0 || side * side != positions || pos.shape[0] != 1 || pos.shape[2] != patch.shape[0] {
                problems.append(
                    "pos_embed has shape \(pos.shape): not [1, \(config.noEmbedClass ? "" : "\(config.prefixTokens) + ")a square grid, \(patch.shape[0])]"
                )
            } else {
                // The weights' patch size (the config's may be anything), times a hybrid backbone's stride.
                settle("imageSize", \.imageSize, side * patch.shape[2] * (config.backbone?.stride ?? 1))
            }
            config.positionEmbedding = .learned
        } else if !stated.contains("positionEmbedding") {
            // Every published ViT layout this reads carries position embeddings; a file without them is damaged,
            // and a model built without would classify by bag of patches, silently.
            problems.append("no pos_embed among the weights (a ViT's position embeddings)")
        } else if config.positionEmbedding == .learned {
            problems.append("the configuration says learned position embeddings, but the weights have no pos_embed")
        }
        if !stated.contains("imageSize") && !stated.contains("preset") {
            config.data.inputSize = [config.channels, config.imageSize, config.imageSize]
        }
        if config.numClasses == 0 { config.labels = nil }  // a feature extractor has no classes to name
        if let labels = config.labels, labels.count != config.numClasses {
            problems.append("\(labels.count) class names for \(config.numClasses) classes")
        }
        if !problems.isEmpty { throw ConfigError(problems.joined(separator: "; ")) }
    }
}
