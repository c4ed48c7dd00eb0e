import Foundation
import NN
import Tensors
import ViT

/// DETR's shape (Carion et al. 2020; Hugging Face `DetrConfig`): a ResNet backbone whose last map is projected to
/// `width`, a post-norm transformer encoder over its positions and a decoder over `queries` learned object queries,
/// a class head (`classNames.count` + "no object") and a 3-layer box head on every decoder layer.
public struct DETRConfig: Codable, Equatable, Sendable {
    /// The backbone (timm's ResNet; its batch norms frozen, no classifier head).
    public var backbone = ResNetConfig()
    /// d_model.
    public var width = 256
    public var heads = 8
    public var encoderLayers = 6
    public var decoderLayers = 6
    /// The feed-forward width of every layer.
    public var feedForward = 2048
    public var queries = 100
    public var classNames: [String] = []
    /// Hugging Face's `auxiliary_loss`: every decoder layer's output goes through the heads (DETR's auxiliary
    /// losses). As in transformers, each layer's output is then normalised before the next layer takes it, and the
    /// last normalised once more; without it, the layers pass their raw outputs and only the last is normalised
    /// (facebookresearch/detr's decoder at inference, and transformers' with the published configurations).
    public var auxiliaryLoss = false
    /// Hugging Face's `dropout`: the probability of zeroing each attention and feed-forward output in training,
    /// before it is added back (DETR trains with 0.1); nil is none, as in a configuration saved before it existed.
    public var dropout: Float?
    /// DETR's image processing: ImageNet's normalisation; the shorter side resized to `shortestEdge` unless the
    /// longer would then pass `longestEdge`.
    public var mean: [Float] = [0.485, 0.456, 0.406]
    public var std: [Float] = [0.229, 0.224, 0.225]
    public var shortestEdge = 800
    public var longestEdge = 1333

    public init() {}

    public var classCount: Int { classNames.count }
    /// The backbone's output channels (its last stage, expanded).
    public var backboneChannels: Int { backbone.featureWidth }

    /// Sizes in range and consistent before a model is built; each problem names its field.
    public func validate() throws {
        var checks = FieldChecks()
        checks.within("width", width, 2...65536)
        checks.within("heads", heads, 1...4096)
        checks.within("encoderLayers", encoderLayers, 0...256)
        checks.within("decoderLayers", decoderLayers, 1...256)
        checks.within("feedForward", feedForward, 1...262_144)
        checks.within("queries", queries, 1...100_000)
        checks.within("classCount", classCount, 1...1_000_000)
        checks.within("shortestEdge", shortestEdge, 1...16384)
        checks.within("longestEdge", longestEdge, 1...16384)
        checks.within("dropout", dropout ?? 0, 0...0.99)
        if checks.isEmpty {
            checks.require(width % heads == 0, "{width} \(width) is not a multiple of {heads} \(heads)")
            checks.require(width % 2 == 0, "{width} \(width) is odd: the sine positions take half each for y and x")
        }
        try checks.check()
        try backbone.validate()
    }
}

/// Multi-head attention as DETR's (`DetrAttention`): positions are added to the queries and keys, never to the
/// values; `keyPadding` masks keys of padded pixels.
public final class DETRAttention: Module {
    public let qProj: Linear
    public let kProj: Linear
    public let vProj: Linear
    public let outProj: Linear
    let heads: Int

    init(width: Int, heads: Int) {
        (qProj, kProj, vProj, outProj) = (Linear(width, width), Linear(width, width), Linear(width, width), Linear(width, width))
        self.heads = heads
        super.init()
    }

    /// x [B, Q, D] (+ queryPosition [B or 1, Q, D]) attends to keys [B, K, D] (+ keyPosition [B, K, D]); keyPadding
    /// [B, 1, 1, K] is added to the scores (0, or a large negative number where a key is padding) -> [B, Q, D].
    func callAsFunction(_ x: Tensor, queryPosition: Tensor?, keys: Tensor, keyPosition: Tensor?, keyPadding: Tensor?) -> Tensor {
        let (b, q, d) = (x.shape[0], x.shape[1], x.shape[2])
        let k = keys.shape[1], headWidth = d / heads
        func split(_ t: Tensor, _ n: Int) -> Tensor { t.reshape([b, n, heads, headWidth]).permute([0, 2, 1, 3]) }  // [B, H, n, hd]
        let queries = split(qProj(queryPosition.map { x + $0 } ?? x), q) * (1 / Float(headWidth).squareRoot())
        let keyVectors = split(kProj(keyPosition.map { keys + $0 } ?? keys), k)
        let values = split(vProj(keys), k)
        var scores = queries.matmul(keyVectors, transposeOther: true)  // [B, H, Q, K]
        if let keyPadding { scores = scores + keyPadding }
        let mixed = scores.softmax().matmul(values)  // [B, H, Q, hd]
        return outProj(mixed.permute([0, 2, 1, 3]).reshape([b, q, d]))
    }
}

/// A post-norm encoder layer (`DetrEncoderLayer`): x = norm(x + attn(q = k = x + pos, v = x)); x = norm(x + FFN(x)).
public final class DETREncoderLayer: Module {
    public let selfAttn: DETRAttention
    public let selfAttnLayerNorm: LayerNorm
    public let fc1: Linear
    public let fc2: Linear
    public let finalLayerNorm: LayerNorm
    let dropout: Dropout

    init(_ c: DETRConfig) {
        selfAttn = DETRAttention(width: c.width, heads: c.heads)
        selfAttnLayerNorm = LayerNorm(c.width, eps: 1e-5)
        (fc1, fc2) = (Linear(c.width, c.feedForward), Linear(c.feedForward, c.width))
        finalLayerNorm = LayerNorm(c.width, eps: 1e-5)
        dropout = Dropout(c.dropout ?? 0)
        super.init()
    }

    /// x, position [B, N, D], padding [B, 1, 1, N] -> [B, N, D]
    func callAsFunction(_ x: Tensor, position: Tensor, padding: Tensor) -> Tensor {
        let attended = selfAttn(x, queryPosition: position, keys: x, keyPosition: position, keyPadding: padding)
        let h = selfAttnLayerNorm(x + dropout(attended))
        return finalLayerNorm(h + dropout(fc2(fc1(h, activation: .relu))))
    }
}

/// A post-norm decoder layer (`DetrDecoderLayer`): self-attention among the queries (their positions on q and k),
/// cross-attention to the encoder's memory (its positions on the keys), a ReLU feed-forward; each added and
/// normalised.
public final class DETRDecoderLayer: Module {
    public let selfAttn: DETRAttention
    public let selfAttnLayerNorm: LayerNorm
    public let encoderAttn: DETRAttention
    public let encoderAttnLayerNorm: LayerNorm
    public let fc1: Linear
    public let fc2: Linear
    public let finalLayerNorm: LayerNorm
    let dropout: Dropout

    init(_ c: DETRConfig) {
        selfAttn = DETRAttention(width: c.width, heads: c.heads)
        selfAttnLayerNorm = LayerNorm(c.width, eps: 1e-5)
        encoderAttn = DETRAttention(width: c.width, heads: c.heads)
        encoderAttnLayerNorm = LayerNorm(c.width, eps: 1e-5)
        (fc1, fc2) = (Linear(c.width, c.feedForward), Linear(c.feedForward, c.width))
        finalLayerNorm = LayerNorm(c.width, eps: 1e-5)
        dropout = Dropout(c.dropout ?? 0)
        super.init()
    }

    /// x [B, Q, D], queryPosition [1, Q, D], memory and memoryPosition [B, N, D], padding [B, 1, 1, N] -> [B, Q, D]
    func callAsFunction(_ x: Tensor, queryPosition: Tensor, memory: Tensor, memoryPosition: Tensor, padding: Tensor) -> Tensor {
        let selfAttended = selfAttn(x, queryPosition: queryPosition, keys: x, keyPosition: queryPosition, keyPadding: nil)
        var h = selfAttnLayerNorm(x + dropout(selfAttended))
        let crossAttended = encoderAttn(h, queryPosition: queryPosition, keys: memory, keyPosition: memoryPosition, keyPadding: padding)
        h = encoderAttnLayerNorm(h + dropout(crossAttended))
        return finalLayerNorm(h + dropout(fc2(fc1(h, activation: .relu))))
    }
}

/// The encoder's layers.
public final class DETREncoder: Module {
    public let layers: [DETREncoderLayer]
    init(_ c: DETRConfig) {
        layers = (0..<c.encoderLayers).map { _ in DETREncoderLayer(c) }
        super.init()
    }
}

/// The decoder's layers and the norm applied to every layer's output.
public final class DETRDecoder: Module {
    public let layers: [DETRDecoderLayer]
    public let layernorm: LayerNorm
    init(_ c: DETRConfig) {
        layers = (0..<c.decoderLayers).map { _ in DETRDecoderLayer(c) }
        layernorm = LayerNorm(c.width, eps: 1e-5)
        super.init()
    }
}

/// The box head: Linear -> ReLU -> Linear -> ReLU -> Linear, then a sigmoid (boxes as cx, cy, w, h in [0, 1]).
public final class DETRBoxHead: Module {
    public let layers: [Linear]
    init(width: Int) {
        layers = [Linear(width, width), Linear(width, width), Linear(width, 4)]
        super.init()
    }

    /// x [..., D] -> [..., 4]
    func callAsFunction(_ x: Tensor) -> Tensor {
        layers[2](layers[1](layers[0](x, activation: .relu), activation: .relu)).sigmoid()
    }
}

/// What DETR says about a batch: the class logits [B, Q, classes + 1] and boxes [B, Q, 4] (cx, cy, w, h relative to
/// each image's unpadded size) of the last decoder layer, and of every earlier one with `auxiliaryLoss`, with the
/// hidden states.
public struct DETROutput {
    /// Each decoder layer's (logits, boxes), the earlier ones DETR's auxiliary outputs.
    public let layers: [(logits: Tensor, boxes: Tensor)]
    /// The last decoder layer's normalised output [B, Q, D].
    public let lastHiddenState: Tensor
    /// The encoder's output [B, N, D] (N = the feature map's positions).
    public let encoderLastHiddenState: Tensor

    public init(layers: [(logits: Tensor, boxes: Tensor)], lastHiddenState: Tensor, encoderLastHiddenState: Tensor) {
        (self.layers, self.lastHiddenState, self.encoderLastHiddenState) = (layers, lastHiddenState, encoderLastHiddenState)
    }

    public var logits: Tensor { layers[layers.count - 1].logits }
    public var boxes: Tensor { layers[layers.count - 1].boxes }
}

/// DETR with Hugging Face's parameter names (`DetrForObjectDetection`): `model.backbone.conv_encoder.model.*` (the
/// timm ResNet), `model.input_projection`, `model.query_position_embeddings`, `model.encoder.layers.N.*`,
/// `model.decoder.layers.N.*`, `model.decoder.layernorm`, `class_labels_classifier`, `bbox_predictor.layers.N`.
/// facebookresearch/detr's names are mapped to these as a checkpoint is read (`DETRCheckpoint`).
public final class DETR: Module {
    public let config: DETRConfig
    public let backbone: ResNet
    public let inputProjection: Conv2d
    public let queryPositionEmbeddings: Tensor  // [Q, D]
    public let encoder: DETREncoder
    public let decoder: DETRDecoder
    public let classLabelsClassifier: Linear
    public let bboxPredictor: DETRBoxHead

    public override var checkpointNames: [String: String] {
        [
            "backbone": "model.backbone.conv_encoder.model", "inputProjection": "model.input_projection",
            "queryPositionEmbeddings": "model.query_position_embeddings.weight", "encoder": "model.encoder",
            "decoder": "model.decoder"
        ]
    }

    public init(_ config: DETRConfig) throws {
        try config.validate()
        self.config = config
        var backboneConfig = config.backbone
        backboneConfig.numClasses = 0
        backbone = try ResNet(backboneConfig)
        inputProjection = Conv2d(config.backboneChannels, config.width, kernel: 1, bias: true)
        queryPositionEmbeddings = Init.normal([config.queries, config.width], std: 1)
        encoder = DETREncoder(config)
        decoder = DETRDecoder(config)
        classLabelsClassifier = Linear(config.width, config.classCount + 1)
        bboxPredictor = DETRBoxHead(width: config.width)
        super.init()
        queryPositionEmbeddings.requiresGrad = true
        freezeBackbone()
    }

    /// DETR trains the backbone from its second stage on, and never its batch norms (frozen: their running
    /// statistics and affine parameters are constants, `x * scale + (b - mean * scale)`).
    func freezeBackbone() {
        for module in [backbone.conv1 as Module, backbone.bn1] + backbone.layer1.map({ $0 as Module }) {
            for p in module.parameters() { p.requiresGrad = false }
        }
        for case let norm as BatchNorm2d in backbone.modules() { for p in norm.parameters() { p.requiresGrad = false } }
    }

    /// The backbone always runs in evaluation mode (its batch norms are frozen); the transformer follows `on`.
    public override func train(_ on: Bool = true) {
        super.train(on)
        backbone.train(false)
    }

    /// images [B, 3, H, W] (normalised, padded bottom-right with zeros), mask [B, H, W] (1 where a pixel is the
    /// image's, 0 where it is padding) -> every decoder layer's logits and boxes.
    public func callAsFunction(_ images: Tensor, mask: [[[Bool]]]) -> DETROutput {
        let b = images.shape[0], d = config.width
        let features = inputProjection(backbone.featureMap(images))  // [B, D, h, w]
        let (h, w) = (features.shape[2], features.shape[3])
        let small = SinePositions.downsample(mask, to: (h, w))  // [B][h][w], nearest, as torch's interpolate
        let position = SinePositions.embedding(small, width: d)  // [B, h·w, D]
        let padding = SinePositions.keyPadding(small)  // [B, 1, 1, h·w]
        var memory = features.reshape([b, d, h * w]).permute([0, 2, 1])  // [B, N, D]
        for layer in encoder.layers { memory = layer(memory, position: position, padding: padding) }
        let queryPosition = queryPositionEmbeddings.reshape([1, config.queries, d])
        var x = Tensor.zeros([b, config.queries, d])
        var outputs: [(Tensor, Tensor)] = []
        for (index, layer) in decoder.layers.enumerated() {
            x = layer(x, queryPosition: queryPosition, memory: memory, memoryPosition: position, padding: padding)
            if config.auxiliaryLoss {
                x = decoder.layernorm(x)
                if index < decoder.layers.count - 1 { outputs.append((classLabelsClassifier(x), bboxPredictor(x))) }
            }
        }
        let last = decoder.layernorm(x)  // [B, Q, D]
        outputs.append((classLabelsClassifier(last), bboxPredictor(last)))
        return DETROutput(layers: outputs, lastHiddenState: last, encoderLastHiddenState: memory)
    }
}

/// DETR's 2-D sine positions (`PositionEmbeddingSine`, normalised): for each unpadded pixel, the running count of
/// unpadded rows above and columns left of it, scaled to 2π by the image's own extent, through sines and cosines of
/// D/2 frequencies (temperature 10000, interleaved sin, cos), y's half first, then x's.
public enum SinePositions {
    /// The pixel mask at the feature map's size: nearest neighbour (source index floor(i · in / out)).
    public static func downsample(_ mask: [[[Bool]]], to size: (Int, Int)) -> [[[Bool]]] {
        mask.map { image in
            let (inH, inW) = (image.count, image.first?.count ?? 0)
            return (0..<size.0).map { y in (0..<size.1).map { x in image[y * inH / size.0][x * inW / size.1] } }
        }
    }

    /// mask [B][h][w] -> positions [B, h·w, width] (rows then columns, as the feature map is flattened).
    public static func embedding(_ mask: [[[Bool]]], width: Int) -> Tensor {
        let half = width / 2, scale = 2 * Float.pi, eps: Float = 1e-6
        // 10000^(2·floor(i/2)/half) for each of the half's channels.
        let frequencies = (0..<half).map { Float(pow(10000, Double(2 * ($0 / 2)) / Double(half))) }
        let b = mask.count, h = mask.first?.count ?? 0, w = mask.first?.first?.count ?? 0
        var out = [Float](repeating: 0, count: b * h * w * width)
        for (n, image) in mask.enumerated() {
            // Cumulative sums of the unpadded area along y and along x.
            var ys = [[Float]](repeating: [Float](repeating: 0, count: w), count: h), xs = ys
            for y in 0..<h {
                for x in 0..<w {
                    let on: Float = image[y][x] ? 1 : 0
                    ys[y][x] = (y > 0 ? ys[y - 1][x] : 0) + on
                    xs[y][x] = (x > 0 ? xs[y][x - 1] : 0) + on
                }
            }
            for y in 0..<h {
                for x in 0..<w {
                    let yEmbed = ys[y][x] / (ys[h - 1][x] + eps) * scale, xEmbed = xs[y][x] / (xs[y][w - 1] + eps) * scale
                    let base = ((n * h + y) * w + x) * width
                    for i in 0..<half {
                        let (py, px) = (yEmbed / frequencies[i], xEmbed / frequencies[i])
                        out[base + i] = i % 2 == 0 ? sin(py) : cos(py)
                        out[base + half + i] = i % 2 == 0 ? sin(px) : cos(px)
                    }
                }
            }
        }
        return Tensor(out, shape: [b, h * w, width])
    }

    /// mask [B][h][w] -> [B, 1, 1, h·w]: 0 for an unpadded position, a large negative number for padding (added to
    /// attention scores, it takes the key out of the softmax).
    public static func keyPadding(_ mask: [[[Bool]]]) -> Tensor {
        let values = mask.flatMap { $0.flatMap { $0.map { $0 ? Float(0) : -1e30 } } }
        let n = (mask.first?.count ?? 0) * (mask.first?.first?.count ?? 0)
        return Tensor(values, shape: [mask.count, 1, 1, n])
    }
}

extension DETRConfig {
    /// Bytes one training step (or, `training` false, one inference batch) takes at `height` x `width` px: the
    /// backbone's as `MemoryEstimate` counts a ResNet's, plus the transformer's tape (per encoder layer about
    /// 16·B·N·D + 2·B·N·F + 2·B·H·N² floats for N positions, per decoder layer about 32·B·Q·D + 2·B·Q·F +
    /// 2·B·H·(Q² + Q·N) for Q queries) and its weights (16 bytes a parameter in training: weights, gradients, two
    /// moments). A resnet18 backbone, width 128, 3 + 3 layers, 20 queries, batch 16 of 64 px: 523 MiB estimated, a
    /// peak RSS of 486 MiB measured (`vit train --task detection --max-steps 2`).
    public func memoryBytes(batchSize: Int, height: Int, width: Int, training: Bool = true) -> Double {
        var resnet = backbone
        resnet.imageSize = max(height, width)
        let purpose: MemoryEstimate.Purpose = training ? .training : .inference
        let backboneBytes = MemoryEstimate(architecture: .resnet(resnet), batchSize: batchSize, purpose: purpose).totalBytes
        let b = Double(batchSize), d = Double(self.width), f = Double(feedForward), h = Double(heads), q = Double(queries)
        let n = Double(((height + 31) / 32) * ((width + 31) / 32))
        let encoder = Double(encoderLayers) * (16 * b * n * d + 2 * b * n * f + 2 * b * h * n * n)
        let decoder = Double(decoderLayers) * (32 * b * q * d + 2 * b * q * f + 2 * b * h * (q * q + q * n))
        let parameters = Double(encoderLayers) * (4 * d * d + 2 * d * f) + Double(decoderLayers) * (8 * d * d + 2 * d * f) + q * d
        let activations = 4 * 1.1 * (encoder + decoder) * (training ? 1 : 1 / Double(max(encoderLayers + decoderLayers, 1)))
        return backboneBytes + activations + (training ? 16 : 4) * parameters
    }

    /// Throws `MemoryEstimate.TooLarge`, with the estimate and what to change, when a step will not fit in the memory
    /// free now.
    public func checkMemory(batchSize: Int, height: Int, width: Int) throws {
        let bytes = memoryBytes(batchSize: batchSize, height: height, width: width)
        guard let available = MemoryEstimate.availableBytes(), bytes > available else { return }
        throw MemoryEstimate.TooLarge(
            description: String(
                format:
                    "one DETR training step needs about %.1f GiB (batch %d of %dx%d px, a %@ ResNet backbone, %d queries), more than the %.1f GiB available; a smaller --batch-size or smaller images fit",
                bytes / 1_073_741_824, batchSize, width, height, "\(backbone.layers)", queries, available / 1_073_741_824))
    }
}
