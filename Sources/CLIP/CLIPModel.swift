import Foundation
import NN
import Tensors
import ViT

/// The shape of a CLIP (open_clip's `model_cfg`): the image tower (a ViT), the text tower (a causal transformer over
/// BPE tokens), the shared embedding width.
public struct CLIPConfig: Codable, Equatable, Sendable {
    public var embedDim = 512
    public var quickGELU = true
    public var imageSize = 224, patchSize = 32, visionWidth = 768, visionLayers = 12, visionHeadWidth = 64
    /// The image tower's MLP width / token width (open_clip's `vision_cfg.mlp_ratio`); the text tower's is 4.
    public var visionMLPRatio: Float = 4
    public var contextLength = 77, vocabSize = 49408, textWidth = 512, textHeads = 8, textLayers = 12
    /// CLIP's image normalisation.
    public var mean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public var std: [Float] = [0.26862954, 0.26130258, 0.27577711]

    public init() {}

    public var visionHeads: Int { visionWidth / visionHeadWidth }
    public var gridSize: Int { imageSize / patchSize }

    /// Every size in range and consistent, before a model is built from it (a file, a flag or a run checkpoint): a
    /// zero or negative width would divide by zero, a huge one allocate without end, a vocabulary without room for the
    /// start and end tokens index out of the embedding. Each problem names its field (`FieldProblem`).
    public func validate() throws {
        var checks = FieldChecks()
        checks.within("embedDim", embedDim, 1...65536)
        checks.within("imageSize", imageSize, 1...16384)
        checks.within("patchSize", patchSize, 1...16384)
        checks.within("visionWidth", visionWidth, 1...65536)
        checks.within("visionLayers", visionLayers, 0...1024)
        checks.within("visionHeadWidth", visionHeadWidth, 1...65536)
        checks.within("contextLength", contextLength, 2...16384)
        checks.within("vocabSize", vocabSize, 1...10_000_000)
        checks.within("textWidth", textWidth, 1...65536)
        checks.within("textHeads", textHeads, 1...4096)
        checks.within("textLayers", textLayers, 0...1024)
        if checks.isEmpty {
            checks.require(imageSize % patchSize == 0, "{patchSize} \(patchSize) does not divide {imageSize} \(imageSize)")
            checks.require(
                visionWidth % visionHeadWidth == 0, "{visionWidth} \(visionWidth) is not a multiple of {visionHeadWidth} \(visionHeadWidth)"
            )
            checks.require(textWidth % textHeads == 0, "{textWidth} \(textWidth) is not a multiple of {textHeads} \(textHeads)")
            // The tokenizer's start and end ids are the vocabulary's last two (49406, 49407 in OpenAI's).
            checks.require(
                vocabSize >= CLIPTokenizer.endOfText + 1,
                "{vocabSize} \(vocabSize) has no room for the start and end tokens (ids up to \(CLIPTokenizer.endOfText))")
        }
        checks.require(visionMLPRatio > 0 && visionMLPRatio <= 64, "{visionMLPRatio} \(visionMLPRatio) is outside (0, 64]")
        checks.require(mean.count == 3 && mean.allSatisfy(\.isFinite), "{mean} \(mean) is not three finite numbers")
        checks.require(std.count == 3 && std.allSatisfy({ $0.isFinite && $0 > 0 }), "{std} \(std) is not three positive numbers")
        try checks.check()
    }

    /// `d[key]` as an integer: nil when absent; an error naming the key when it is not a whole number an Int holds
    /// (`NSNumber.intValue` would wrap 1e30 or cut 3.5 to 3 without a word).
    static func integer(_ d: [String: Any], _ key: String) throws -> Int? {
        guard let value = try number(d, key) else { return nil }
        guard value == value.rounded(), abs(value) < 1e15 else { throw CLIPError("\(key) is \(value), not an integer in range") }
        return Int(value)
    }

    /// `d[key]` as a finite number: nil when absent; an error naming the key when it is something else.
    static func number(_ d: [String: Any], _ key: String) throws -> Double? {
        guard let raw = d[key], !(raw is NSNull) else { return nil }
        // (true and false arrive as NSNumbers too, of Objective-C type "c".)
        guard let number = raw as? NSNumber, String(cString: number.objCType) != "c", number.doubleValue.isFinite else {
            throw CLIPError("\(key) is \(raw), not a number")
        }
        return number.doubleValue
    }

    /// The image tower as the ViT shape `MemoryEstimate` knows.
    var imageTower: ViTConfig {
        var vit = ViTConfig()
        (vit.imageSize, vit.patchSize, vit.width, vit.depth) = (imageSize, patchSize, visionWidth, visionLayers)
        (vit.heads, vit.mlpRatio, vit.numClasses) = (visionHeads, visionMLPRatio, 0)
        return vit
    }

    /// Throws unless the weights and a forward pass of `batchSize` images and texts fit in the memory free now,
    /// checked after `validate` and before a model is built: sizes each in range can still multiply past any memory
    /// (1,024 layers of width 65,536), which an allocation would only find by failing.
    public func checkMemory(batchSize: Int = 1) throws {
        let image = MemoryEstimate(config: imageTower, batchSize: batchSize, purpose: .inference).totalBytes
        let t = Double(contextLength), w = Double(textWidth), b = Double(batchSize)
        let textWeights = Double(textLayers) * 12 * w * w + Double(vocabSize + contextLength) * w + w * Double(embedDim)
        let textActivations = b * (8 * t * w + 8 * t * w + 2 * Double(textHeads) * t * t)
        let total = image + 4 * (textWeights + textActivations)
        guard let available = MemoryEstimate.availableBytes(), total > available else { return }
        throw MemoryEstimate.TooLarge(
            description: String(
                format:
                    "this CLIP needs about %.1f GiB (image tower %d blocks of width %d at %d px, text tower %d blocks of width %d over %d tokens), more than the %.1f GiB available",
                total / 1_073_741_824, visionLayers, visionWidth, imageSize, textLayers, textWidth, contextLength, available / 1_073_741_824
            ))
    }

    /// From open_clip's `open_clip_config.json` (`model_cfg`, `preprocess_cfg`).
    public init(openCLIP json: [String: Any]) throws {
        let model = json["model_cfg"] as? [String: Any] ?? json
        let vision = model["vision_cfg"] as? [String: Any] ?? [:], text = model["text_cfg"] as? [String: Any] ?? [:]
        func int(_ d: [String: Any], _ key: String) throws -> Int? { try Self.integer(d, key) }
        guard let embed = try int(model, "embed_dim") else { throw CLIPError("open_clip config has no model_cfg.embed_dim") }
        embedDim = embed
        quickGELU = model["quick_gelu"] as? Bool ?? false
        imageSize = try int(vision, "image_size") ?? imageSize
        patchSize = try int(vision, "patch_size") ?? patchSize
        visionWidth = try int(vision, "width") ?? visionWidth
        visionLayers = try int(vision, "layers") ?? visionLayers
        visionHeadWidth = try int(vision, "head_width") ?? visionHeadWidth
        visionMLPRatio = try Self.number(vision, "mlp_ratio").map(Float.init) ?? visionMLPRatio
        contextLength = try int(text, "context_length") ?? contextLength
        vocabSize = try int(text, "vocab_size") ?? vocabSize
        textWidth = try int(text, "width") ?? textWidth
        textHeads = try int(text, "heads") ?? textHeads
        textLayers = try int(text, "layers") ?? textLayers
        if let pre = json["preprocess_cfg"] as? [String: Any] {
            if let m = pre["mean"] as? [Double], m.count == 3 { mean = m.map(Float.init) }
            if let s = pre["std"] as? [Double], s.count == 3 { std = s.map(Float.init) }
        }
    }
}

public struct CLIPError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Multi-head attention with OpenAI's packed in-projection (`in_proj_weight` [3D, D]: q, k, v stacked, as timm's qkv)
/// and `out_proj`; `causal` masks each token from the ones after it (the text tower).
public final class CLIPAttention: Module {
    public let inProjWeight: Tensor  // [3D, D]
    public let inProjBias: Tensor  // [3D]
    public let outProj: Linear
    let heads: Int

    init(width: Int, heads: Int) {
        inProjWeight = Init.truncatedNormal([3 * width, width])
        inProjBias = Init.zeros([3 * width])
        outProj = Linear(width, width)
        self.heads = heads
        super.init()
        inProjWeight.requiresGrad = true
        inProjBias.requiresGrad = true
    }

    /// x [B, T, D] -> [B, T, D]
    func callAsFunction(_ x: Tensor, causal: Bool) -> Tensor {
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2])
        let headDim = d / heads, scale = 1 / Float(headDim).squareRoot()
        let qkv = x.linear(weight: inProjWeight, bias: inProjBias)  // [B, T, 3D]
        guard causal else { return outProj(qkv.multiHeadAttention(heads: heads, scale: scale).output) }
        let parts = qkv.reshape([b, t, 3, heads, headDim]).permute([2, 0, 3, 1, 4])  // [3, B, H, T, hd]
        let q = parts.slice(axis: 0, start: 0, length: 1).squeeze(0), k = parts.slice(axis: 0, start: 1, length: 1).squeeze(0)
        let v = parts.slice(axis: 0, start: 2, length: 1).squeeze(0)
        // -inf above the diagonal (a large negative number: exp gives 0 and no NaN appears).
        let mask = Tensor((0..<(t * t)).map { $0 % t > $0 / t ? -1e30 : 0 }, shape: [1, 1, t, t])
        let probabilities = (q.matmul(k, transposeOther: true) * scale + mask).softmax()  // [B, H, T, T]
        let mixed = probabilities.matmul(v).permute([0, 2, 1, 3]).reshape([b, t, d])  // [B, T, D]
        return outProj(mixed)
    }
}

/// OpenAI's `ResidualAttentionBlock`: x + attn(ln_1(x)); x + mlp(ln_2(x)), the MLP c_fc -> (Quick)GELU -> c_proj.
public final class ResidualAttentionBlock: Module {
    public let lnAttention: LayerNorm
    public let attn: CLIPAttention
    public let lnMLP: LayerNorm
    public let mlp: CLIPMLP

    public override var checkpointNames: [String: String] { ["lnAttention": "ln_1", "lnMLP": "ln_2"] }

    init(width: Int, heads: Int, mlpWidth: Int, quickGELU: Bool) {
        lnAttention = LayerNorm(width, eps: 1e-5)
        attn = CLIPAttention(width: width, heads: heads)
        lnMLP = LayerNorm(width, eps: 1e-5)
        mlp = CLIPMLP(width: width, hidden: mlpWidth, quickGELU: quickGELU)
        super.init()
    }

    func callAsFunction(_ x: Tensor, causal: Bool) -> Tensor {
        let h = x + attn(lnAttention(x), causal: causal)
        return h + mlp(lnMLP(h))
    }
}

public final class CLIPMLP: Module {
    public let cFc: Linear
    public let cProj: Linear
    let quickGELU: Bool

    init(width: Int, hidden: Int, quickGELU: Bool) {
        cFc = Linear(width, hidden)
        cProj = Linear(hidden, width)
        self.quickGELU = quickGELU
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = cFc(x)
        // QuickGELU, OpenAI's: x · sigmoid(1.702 x).
        return cProj(quickGELU ? h * (h * 1.702).sigmoid() : h.gelu())
    }
}

public final class CLIPTransformer: Module {
    public let resblocks: [ResidualAttentionBlock]
    init(width: Int, layers: Int, heads: Int, mlpRatio: Float = 4, quickGELU: Bool) {
        let hidden = Int(Float(width) * mlpRatio)
        resblocks = (0..<layers).map { _ in ResidualAttentionBlock(width: width, heads: heads, mlpWidth: hidden, quickGELU: quickGELU) }
        super.init()
    }
    func callAsFunction(_ x: Tensor, causal: Bool) -> Tensor { resblocks.reduce(x) { $1($0, causal: causal) } }
}

/// A convolution weight without bias (CLIP's patch embedding `conv1`).
public final class BiasFreePatchConv: Module {
    public let weight: Tensor  // [D, 3, P, P]
    init(width: Int, patchSize: Int) {
        weight = Init.truncatedNormal([width, 3, patchSize, patchSize])
        super.init()
        weight.requiresGrad = true
    }
}

/// CLIP's image tower (open_clip `VisionTransformer`): patches -> [class] + positions -> ln_pre -> blocks -> ln_post on
/// the class token -> projection.
public final class CLIPVisionTower: Module {
    public let conv1: BiasFreePatchConv
    public let classEmbedding: Tensor  // [D]
    public let positionalEmbedding: Tensor  // [1 + N, D]
    public let lnPre: LayerNorm
    public let transformer: CLIPTransformer
    public let lnPost: LayerNorm
    public let proj: Tensor  // [D, E]
    let patchSize: Int

    init(_ c: CLIPConfig) {
        let d = c.visionWidth
        conv1 = BiasFreePatchConv(width: d, patchSize: c.patchSize)
        classEmbedding = Init.truncatedNormal([d])
        positionalEmbedding = Init.truncatedNormal([1 + c.gridSize * c.gridSize, d])
        lnPre = LayerNorm(d, eps: 1e-5)
        transformer = CLIPTransformer(
            width: d, layers: c.visionLayers, heads: c.visionHeads, mlpRatio: c.visionMLPRatio, quickGELU: c.quickGELU)
        lnPost = LayerNorm(d, eps: 1e-5)
        proj = Init.truncatedNormal([d, c.embedDim])
        patchSize = c.patchSize
        super.init()
        for p in [classEmbedding, positionalEmbedding, proj] { p.requiresGrad = true }
    }

    /// images [B, 3, S, S] (normalised) -> image embeddings [B, E] (projected, not normalised).
    func callAsFunction(_ images: Tensor) -> Tensor {
        let b = images.shape[0], d = classEmbedding.count
        let x = images.conv2d(weight: conv1.weight, stride: patchSize)  // [B, D, g, g]
        let patches = x.reshape([b, d, -1]).permute([0, 2, 1])  // [B, N, D]
        let cls = classEmbedding.reshape([1, 1, d]).expand(to: [b, 1, d])
        var h = Tensor.concat([cls, patches], axis: 1) + positionalEmbedding  // [B, 1 + N, D]
        h = transformer(lnPre(h), causal: false)
        let pooled = lnPost(h.slice(axis: 1, start: 0, length: 1).squeeze(1))  // [B, D]
        return pooled.matmul(proj)  // [B, E]
    }
}

public final class TokenEmbedding: Module {
    public let weight: Tensor  // [vocab, W]
    init(vocab: Int, width: Int) {
        weight = Init.normal([vocab, width], std: 0.02)
        super.init()
        weight.requiresGrad = true
    }
}

/// CLIP with open_clip's (= OpenAI's) parameter names: `visual.*`, `token_embedding.weight`, `positional_embedding`,
/// `transformer.resblocks.i.*`, `ln_final`, `text_projection`, `logit_scale`.
public final class CLIPModel: Module {
    public let config: CLIPConfig
    public let visual: CLIPVisionTower
    public let tokenEmbedding: TokenEmbedding
    public let positionalEmbedding: Tensor  // [context, W]
    public let transformer: CLIPTransformer
    public let lnFinal: LayerNorm
    public let textProjection: Tensor  // [W, E]
    public let logitScale: Tensor  // []

    public init(_ config: CLIPConfig) {
        self.config = config
        visual = CLIPVisionTower(config)
        tokenEmbedding = TokenEmbedding(vocab: config.vocabSize, width: config.textWidth)
        positionalEmbedding = Init.normal([config.contextLength, config.textWidth], std: 0.01)
        transformer = CLIPTransformer(
            width: config.textWidth, layers: config.textLayers, heads: config.textHeads, quickGELU: config.quickGELU)
        lnFinal = LayerNorm(config.textWidth, eps: 1e-5)
        textProjection = Init.normal([config.textWidth, config.embedDim], std: 1 / Float(config.textWidth).squareRoot())
        logitScale = Tensor(scalar: Float(Foundation.log(1 / 0.07)))
        super.init()
        for p in [positionalEmbedding, textProjection, logitScale] { p.requiresGrad = true }
    }

    /// images [B, 3, S, S] -> [B, E], projected, not normalised (open_clip `encode_image`).
    public func encodeImage(_ images: Tensor) -> Tensor { visual(images) }

    /// token ids (each `contextLength` long, `CLIPTokenizer.tokenize`) -> [T, E], projected, not normalised
    /// (`encode_text`): the features at each text's end-of-text token (its largest id).
    public func encodeText(_ tokens: [[Int]]) -> Tensor {
        let t = config.contextLength, w = config.textWidth
        let x = tokenEmbedding.weight.indexSelect(axis: 0, tokens.flatMap { $0 }).reshape([tokens.count, t, w]) + positionalEmbedding
        let h = lnFinal(transformer(x, causal: true))  // [T, context, W]
        let ends = tokens.map { ids in ids.indices.max { ids[$0] < ids[$1] }! }
        let pooled = h.gather(axis: 1, ends.map { [$0] }).squeeze(1)  // [T, W]
        return pooled.matmul(textProjection)  // [T, E]
    }

    /// exp(logit_scale) · normalised images · normalised textsᵀ: [images, texts].
    public func logits(imageEmbeddings: Tensor, textEmbeddings: Tensor) -> Tensor {
        func normalised(_ x: Tensor) -> Tensor { x / x.square().sum(axis: -1, keepDim: true).sqrt() }
        return normalised(imageEmbeddings).matmul(normalised(textEmbeddings), transposeOther: true) * logitScale.exp()
    }
}
