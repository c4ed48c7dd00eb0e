import Checkpoints
import Foundation
import NN
import Tensors

/// A ResNet's shape (He et al. 2016, timm `resnet.py`'s `ResNet`): basic or bottleneck blocks, blocks per stage,
/// each stage's width, the stem.
public struct ResNetConfig: Codable, Equatable, Sendable {
    public enum BlockKind: String, Codable, Sendable {
        /// Two 3x3 convolutions (ResNet-18/34).
        case basic
        /// 1x1, 3x3, 1x1 with 4x expansion (ResNet-50 and up).
        case bottleneck
    }

    public var block = BlockKind.basic
    /// Blocks per stage (timm `layers`).
    public var layers = [2, 2, 2, 2]
    /// Each stage's width before expansion (timm `channels`).
    public var channels = [64, 128, 256, 512]
    public var stemWidth = 64
    /// CIFAR's stem: one 3x3 stride-1 convolution and no max pool (32 px images keep their resolution), instead of
    /// ImageNet's 7x7 stride-2 convolution and 3x3 stride-2 max pool.
    public var cifarStem = false
    public var batchNormEps: Float = 1e-5
    public var numClasses = 1000
    public var imageSize = 224
    public var data = DataConfig()
    public var labels: [String]?

    public init() {}

    public var expansion: Int { block == .basic ? 1 : 4 }
    /// The width of the features the head reads.
    public var featureWidth: Int { (channels.last ?? 0) * expansion }

    public func validate() throws {
        var problems: [String] = []
        if layers.count != 4 || channels.count != 4 { problems.append("a ResNet has 4 stages: layers \(layers), channels \(channels)") }
        if layers.contains(where: { !(1...64).contains($0) }) { problems.append("blocks per stage \(layers) outside 1...64") }
        if channels.contains(where: { !(1...8192).contains($0) }) || !(1...8192).contains(stemWidth) {
            problems.append("widths \(channels), stem \(stemWidth) outside 1...8192")
        }
        if !(0...10_000_000).contains(numClasses) { problems.append("class count \(numClasses)") }
        if !(8...16384).contains(imageSize) { problems.append("image size \(imageSize) outside 8...16384") }
        if !(batchNormEps > 0 && batchNormEps < 1) { problems.append("batch-norm eps \(batchNormEps) is outside (0, 1)") }
        problems += data.problems(imageSize: imageSize)
        if let labels, numClasses > 0, labels.count != numClasses { problems.append("\(labels.count) labels for \(numClasses) classes") }
        if !problems.isEmpty { throw ConfigError(problems.joined(separator: "; ")) }
    }
}

/// One residual block of a timm ResNet, basic (conv1 3x3 -> conv2 3x3) or bottleneck (conv1 1x1 -> conv2 3x3 ->
/// conv3 1x1), each convolution followed by batch norm, ReLU after all but the last, the shortcut added before the
/// final ReLU; `downsample` (1x1 convolution + batch norm) where the shape changes.
public final class ResNetBlock: Module {
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let conv2: Conv2d
    public let bn2: BatchNorm2d
    public let conv3: Conv2d?
    public let bn3: BatchNorm2d?
    /// timm's `downsample` Sequential: [Conv2d 1x1, BatchNorm2d], named `downsample.0`, `downsample.1`.
    public let downsample: [Module]?

    init(_ kind: ResNetConfig.BlockKind, inChannels: Int, planes: Int, stride: Int, eps: Float) {
        let out = planes * (kind == .basic ? 1 : 4)
        switch kind {
        case .basic:
            conv1 = Conv2d(inChannels, planes, kernel: 3, stride: stride)
            conv2 = Conv2d(planes, planes, kernel: 3)
            conv3 = nil
            bn3 = nil
        case .bottleneck:
            conv1 = Conv2d(inChannels, planes, kernel: 1)
            conv2 = Conv2d(planes, planes, kernel: 3, stride: stride)
            conv3 = Conv2d(planes, out, kernel: 1)
            bn3 = BatchNorm2d(out, eps: eps)
        }
        bn1 = BatchNorm2d(planes, eps: eps)
        bn2 = BatchNorm2d(planes, eps: eps)
        downsample =
            stride != 1 || inChannels != out ? [Conv2d(inChannels, out, kernel: 1, stride: stride), BatchNorm2d(out, eps: eps)] : nil
        super.init()
        // timm's zero_init_last: each block starts as the identity.
        Init.zero(bn3?.weight ?? bn2.weight)
    }

    /// x [B, Cin, H, W] -> [B, Cout, H / stride, W / stride]
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = bn1(conv1(x)).relu()
        h = bn2(conv2(h))
        if let conv3, let bn3 { h = bn3(conv3(h.relu())) }
        var shortcut = x
        if let downsample, let conv = downsample.first as? Conv2d, let norm = downsample.last as? BatchNorm2d { shortcut = norm(conv(x)) }
        return (h + shortcut).relu()
    }
}

/// timm's `ResNet` with its parameter names (`conv1`, `bn1`, `layer1.0.conv1`, ..., `fc`): stem, four stages of
/// residual blocks (the first at stride 1, the others halving the resolution), global average pooling, a linear head.
public final class ResNet: Module {
    public let config: ResNetConfig
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let layer1: [ResNetBlock]
    public let layer2: [ResNetBlock]
    public let layer3: [ResNetBlock]
    public let layer4: [ResNetBlock]
    public let fc: Linear?

    public init(_ config: ResNetConfig) throws {
        try config.validate()
        self.config = config
        conv1 =
            config.cifarStem
            ? Conv2d(3, config.stemWidth, kernel: 3) : Conv2d(3, config.stemWidth, kernel: 7, stride: 2)
        bn1 = BatchNorm2d(config.stemWidth, eps: config.batchNormEps)
        var inChannels = config.stemWidth
        var stages: [[ResNetBlock]] = []
        for (stage, (count, planes)) in zip(config.layers, config.channels).enumerated() {
            stages.append(
                (0..<count).map { i in
                    let block = ResNetBlock(
                        config.block, inChannels: inChannels, planes: planes, stride: i == 0 && stage > 0 ? 2 : 1,
                        eps: config.batchNormEps)
                    inChannels = planes * config.expansion
                    return block
                })
        }
        (layer1, layer2, layer3, layer4) = (stages[0], stages[1], stages[2], stages[3])
        fc = config.numClasses > 0 ? Linear(config.featureWidth, config.numClasses) : nil
        super.init()
    }

    /// images [B, 3, H, W] -> the last stage's feature map [B, C, H/32, W/32] (H/8 with the CIFAR stem).
    public func featureMap(_ images: Tensor) -> Tensor { blockedFeatureMap(images).channelsFirst() }

    /// The feature map in the layout the backend's convolutions run fastest on: after the stem's first
    /// convolution (3 input channels) the activations are channel-blocked, [B, C / b, H, W, b], when every width
    /// is a multiple of the block; channels-first otherwise.
    private func blockedFeatureMap(_ images: Tensor) -> Tensor {
        var x = conv1(images)  // [B, stem, H', W']
        let block = images.preferredChannelBlock
        let widths = [config.stemWidth] + config.channels + config.channels.map { $0 * config.expansion }
        if widths.allSatisfy({ $0 % block == 0 }) { x = x.channelBlocked(block) }
        x = bn1(x).relu()
        if !config.cifarStem { x = x.maxPool2d(kernel: 3, stride: 2, padding: .symmetric(1)) }
        for block in layer1 + layer2 + layer3 + layer4 { x = block(x) }
        return x
    }

    /// images -> (logits [B, classes] (the features when there is no head), pooled features [B, C]).
    public func forward(_ images: Tensor) -> (logits: Tensor, features: Tensor) {
        // Global average pooling: [B, C, h, w] -> [B, C], or [B, C / b, h, w, b] -> [B, C / b, b] = [B, C].
        let features = blockedFeatureMap(images).mean(axes: [2, 3]).reshape([images.shape[0], config.featureWidth])
        return (fc.map { $0(features) } ?? features, features)
    }

    public func callAsFunction(_ images: Tensor) -> Tensor { forward(images).logits }
}

// MARK: - Checkpoints

extension ResNet {
    /// timm's registered ResNets this reads by name.
    public static let presets: [String: (ResNetConfig.BlockKind, [Int])] = [
        "resnet18": (.basic, [2, 2, 2, 2]), "resnet34": (.basic, [3, 4, 6, 3]), "resnet50": (.bottleneck, [3, 4, 6, 3]),
        "resnet101": (.bottleneck, [3, 4, 23, 3]), "resnet152": (.bottleneck, [3, 8, 36, 3])
    ]

    /// The configuration of timm ResNet tensors (`conv1.weight`, `layerN.i.*`, `fc.*`), with what a timm-style
    /// config.json states (`architecture`, `model_args.block/layers/channels`, `pretrained_cfg`): the tensors decide
    /// every width, and must agree with the config.
    public static func config(tensors: [String: Tensor], file: HubConfig, url: URL? = nil) throws -> ResNetConfig {
        var config = ResNetConfig()
        guard let stem = tensors["conv1.weight"], stem.rank == 4, stem.shape[1] == 3 else {
            throw ConfigError("no ResNet stem (conv1.weight [width, 3, k, k])")
        }
        config.stemWidth = stem.shape[0]
        config.cifarStem = stem.shape[2] == 3
        config.block = tensors["layer1.0.conv3.weight"] != nil ? .bottleneck : .basic
        config.layers = (1...4).map { stage in
            Set(
                tensors.keys.compactMap { key -> Int? in
                    guard key.hasPrefix("layer\(stage).") else { return nil }
                    return Int(key.dropFirst("layer\(stage).".count).prefix { $0 != "." })
                }
            ).count
        }
        config.channels = try (1...4).map { stage in
            guard let conv = tensors["layer\(stage).0.conv1.weight"], conv.rank == 4 else {
                throw ConfigError("stage \(stage) has no first block (layer\(stage).0.conv1.weight)")
            }
            return conv.shape[0]
        }
        if let fc = tensors["fc.weight"] {
            guard fc.rank == 2, fc.shape[1] == config.featureWidth else {
                throw ConfigError("fc.weight is \(fc.shape), not [classes, \(config.featureWidth)]")
            }
            config.numClasses = fc.shape[0]
        } else {
            config.numClasses = 0
        }
        if let saved = file.native("swiftvit_resnet", as: ResNetConfig.self) {
            guard saved.layers == config.layers, saved.channels == config.channels, saved.block == config.block else {
                throw ConfigError(
                    "config.json describes \(saved.block) blocks \(saved.layers), the weights \(config.block) \(config.layers)")
            }
            try saved.validate()
            return saved
        }
        let args = file.modelArgs
        if let architecture = file.architecture, let (block, layers) = presets[architecture],
            block != config.block || layers != config.layers
        {
            throw ConfigError("config.json says \(architecture), the weights have \(config.block) blocks \(config.layers)")
        }
        if let values = args["layers"]?.array, case let layers = values.compactMap(\.int), layers != config.layers {
            throw ConfigError(
                "config.json says layers \(values.count == layers.count ? "\(layers)" : "\(values)"), the weights have \(config.layers)")
        }
        if let eps = args["bn_eps"]?.float { config.batchNormEps = eps }
        if let cifar = args["cifar_stem"]?.bool { config.cifarStem = cifar }
        if file["pretrained_cfg"] != nil {
            try config.data.read(pretrainedConfig: file.pretrainedConfig, in: url ?? URL(fileURLWithPath: "config.json"))
            if file.pretrainedConfig["input_size"] != nil { config.imageSize = config.data.inputSize[2] }
        }
        config.labels = file.labelNames.flatMap { $0.count == config.numClasses ? $0 : nil }
        try config.validate()
        return config
    }

    /// A timm ResNet from its tensors (safetensors or PyTorch file; `num_batches_tracked` counters are dropped: the
    /// momentum is fixed) and config.json.
    public static func load(tensors raw: [String: Tensor], file: HubConfig, url: URL? = nil) throws -> ResNet {
        var tensors = raw.filter { !$0.key.hasSuffix("num_batches_tracked") }
        let config = try config(tensors: tensors, file: file, url: url)
        try MemoryEstimate.checkInference(.resnet(config))
        let model = try Init.withoutDrawing { try ResNet(config) }
        try model.load(stateDict: tensors, takingStorage: true)
        tensors.removeAll()
        model.eval()
        return model
    }
}

extension ResNet {
    /// Writes weights named as `ResNet` names them (running statistics included) with a timm hub-style config.json
    /// (`architecture` the timm name when the shape is a registered one, `model_args` the whole shape,
    /// `pretrained_cfg` the data config) and SwiftViT's own `swiftvit_resnet` entry.
    public static func save(_ tensors: [String: Tensor], config: ResNetConfig, to folder: URL) throws {
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(folder, "cannot be created: \(error.localizedDescription)")
        }
        try Safetensors.write(
            tensors, metadata: ["format": "pt", "producer": "SwiftViT"], to: folder.appendingPathComponent("model.safetensors"))
        let registered = presets.first { $0.value.0 == config.block && $0.value.1 == config.layers }?.key
        let standard = config.channels == [64, 128, 256, 512] && config.stemWidth == 64 && !config.cifarStem
        var file = HubConfig()
        file.architecture = (standard ? registered : nil) ?? "resnet_custom"
        file.numClasses = config.numClasses
        file.globalPool = "avg"
        file.modelArgs = HubConfig.Section([
            "block": .string(config.block == .basic ? "BasicBlock" : "Bottleneck"), "layers": JSONValue(config.layers),
            "channels": JSONValue(config.channels), "stem_width": .int(config.stemWidth), "cifar_stem": .bool(config.cifarStem),
            "bn_eps": .float(config.batchNormEps)
        ])
        file.setDataConfig(config.data, numClasses: config.numClasses, firstConv: "conv1", classifier: "fc")
        try file.setNative("swiftvit_resnet", config)
        file.labelNames = config.labels
        try AtomicFile.write(
            try file.data(),
            to: folder.appendingPathComponent("config.json"))
    }
}

extension Architecture {
    /// Writes `tensors` (a model of this architecture's state dict) as the architecture's native folder.
    public func save(_ tensors: [String: Tensor], to folder: URL) throws {
        switch self {
        case .vit(let config): try NativeFormat.save(tensors, config: config, to: folder)
        case .resnet(let config): try ResNet.save(tensors, config: config, to: folder)
        }
    }
}
