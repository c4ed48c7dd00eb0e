import NN
import Tensors

/// The pre-logits (representation) layer of the original ViT: Linear then tanh (timm `pre_logits.fc`).
public final class PreLogits: Module {
    public let fc: Linear
    init(width: Int, size: Int) { fc = Linear(width, size); super.init() }
    public func callAsFunction(_ x: Tensor) -> Tensor { fc(x).tanh() }
}

/// What a forward pass can return besides the logits, chosen up front so nothing else is kept.
public struct ViTOutputs {
    /// [B, classes]; for a distilled DeiT in evaluation, the mean of both heads.
    public var logits: Tensor
    /// The pooled, normalised features the head reads [B, D] (or [B, representation] with a pre-logits layer).
    public var preLogits: Tensor
    /// All tokens after the final norm [B, N, D] (before pooling; with `fc_norm` models, the last block's output).
    public var finalTokens: Tensor
    /// Each block's output tokens [B, N, D], when asked for.
    public var blockOutputs: [Tensor] = []
    /// Each block's attention probabilities [B, heads, N, N], when asked for.
    public var attentions: [Tensor] = []
    /// DeiT distilled: the class-token head and the distillation-token head separately.
    public var classHeadLogits: Tensor?
    public var distillationHeadLogits: Tensor?
}

/// Vision Transformer (Dosovitskiy et al. 2021) and DeiT (Touvron et al. 2021), with timm's parameter names:
/// patches -> linear projection -> [class (+ distillation) token] -> + position embeddings -> pre-norm blocks ->
/// LayerNorm -> pool (class token or patch mean) -> head.
public final class VisionTransformer: Module {
    public let config: ViTConfig
    public let patchEmbed: PatchEmbedding
    public let clsToken: Tensor?  // [1, 1, D]
    public let distToken: Tensor?  // [1, 1, D]
    public let posEmbed: Tensor?  // [1, N (+ prefix unless noEmbedClass), D]; learned only
    /// The fixed sin-cos table when `positionEmbedding == .sincos2d` (a buffer, not a parameter).
    let fixedPositions: FixedTensor?
    /// What is added to the tokens: the learned embeddings or the fixed table, [1, T or N, D]; nil without.
    public var positionTable: Tensor? { posEmbed ?? fixedPositions?.tensor }
    public let posDrop: Dropout
    public let blocks: [Block]
    public let norm: LayerNorm?  // on all tokens (token pooling)
    public let fcNorm: LayerNorm?  // after pooling (avg pooling)
    public let preLogits: PreLogits?
    public let head: Linear?
    public let headDist: Linear?

    public init(_ config: ViTConfig) throws {
        try config.validate()
        self.config = config
        let d = config.width
        patchEmbed = PatchEmbedding(width: d, channels: config.channels, patchSize: config.patchSize, backbone: config.backbone)
        clsToken = config.classToken ? Init.truncatedNormal([1, 1, d], std: 1e-6) : nil
        distToken = config.distillationToken ? Init.truncatedNormal([1, 1, d], std: 0.02) : nil
        let positions = config.patchCount + (config.noEmbedClass ? 0 : config.prefixTokens)
        switch config.positionEmbedding {
        case .learned:
            posEmbed = Init.truncatedNormal([1, positions, d], std: 0.02)
            fixedPositions = nil
        case .sincos2d:
            posEmbed = nil
            let table = PositionEmbeddings.sinCos2D(gridHeight: config.gridSize, gridWidth: config.gridSize, width: d)
            let prefix = config.noEmbedClass ? [] : [Tensor.zeros([1, config.prefixTokens, d])]
            fixedPositions = FixedTensor(prefix.isEmpty ? table : Tensor.concat(prefix + [table], axis: 1))
        case .none:
            posEmbed = nil
            fixedPositions = nil
        }
        posDrop = Dropout(config.dropout)
        blocks = (0..<config.depth).map { i in
            // Stochastic depth rises linearly from 0 to `dropPath` over the blocks, as in timm.
            let dropPath = config.depth > 1 ? config.dropPath * Float(i) / Float(config.depth - 1) : config.dropPath
            return Block(dim: d, heads: config.heads, options: config.blockOptions(dropPath: dropPath))
        }
        norm = config.usesFCNorm ? nil : LayerNorm(d, eps: config.layerNormEps)
        fcNorm = config.usesFCNorm ? LayerNorm(d, eps: config.layerNormEps) : nil
        preLogits = config.representationSize.map { PreLogits(width: d, size: $0) }
        let featureWidth = config.representationSize ?? d
        head = config.numClasses > 0 ? Linear(featureWidth, config.numClasses) : nil
        headDist = config.numClasses > 0 && config.distillationToken ? Linear(featureWidth, config.numClasses) : nil
        super.init()
        if let head { Init.zero(head.weight) }  // timm's head init (zero weight)
        for p in [clsToken, distToken, posEmbed].compactMap({ $0 }) { p.requiresGrad = true }
    }

    // MARK: timm's forward API: features, intermediates, head

    /// timm's `forward_features`: images [B, C, H, W] (normalised) -> every token after the final norm [B, T, D]
    /// (with `fc_norm` models, the last block's output), float32.
    public func forwardFeatures(_ images: Tensor) -> Tensor { encode(images).tokens.cast(to: .float32) }

    /// timm's `forward_intermediates`: the final tokens [B, T, D] and each block's output tokens [B, T, D], and with
    /// `attentions` each block's attention probabilities [B, heads, T, T]; all float32. What `vit inspect` and
    /// `vit embed --tokens` read.
    public func forwardIntermediates(_ images: Tensor, attentions: Bool = false)
        -> (features: Tensor, blocks: [Tensor], attentions: [Tensor])
    {
        let encoded = encode(images, keepBlockOutputs: true, keepAttentions: attentions)
        return (
            encoded.tokens.cast(to: .float32), encoded.blockOutputs.map { $0.cast(to: .float32) },
            encoded.attentions.map { $0.cast(to: .float32) }
        )
    }

    /// timm's `forward_head`: tokens [B, T, D] (from `forwardFeatures`) -> logits [B, classes] (a distilled DeiT's two
    /// heads averaged, as in evaluation), or with `preLogits` the pooled features the head reads [B, D]; float32.
    public func forwardHead(_ tokens: Tensor, preLogits: Bool = false) -> Tensor {
        let heads = self.heads(tokens.cast(to: computeDType))
        return preLogits ? heads.preLogits : heads.logits
    }

    /// images [B, C, H, W] (normalised) -> logits and the intermediates asked for (the training path: a distilled
    /// model's heads apart too).
    public func forward(
        _ images: Tensor, collectBlockOutputs: Bool = false,
        collectAttentions: Bool = false
    ) -> ViTOutputs {
        let encoded = encode(images, keepBlockOutputs: collectBlockOutputs, keepAttentions: collectAttentions)
        var outputs = heads(encoded.tokens)
        outputs.blockOutputs = encoded.blockOutputs.map { $0.cast(to: .float32) }
        outputs.attentions = encoded.attentions.map { $0.cast(to: .float32) }
        return outputs
    }

    /// Patches, prefix tokens, positions and the blocks: the tokens after the final norm [B, T, D] in the compute
    /// dtype, and each block's output and attention when asked for.
    private func encode(_ images: Tensor, keepBlockOutputs: Bool = false, keepAttentions: Bool = false)
        -> (tokens: Tensor, blockOutputs: [Tensor], attentions: [Tensor])
    {
        precondition(
            images.shape.count == 4 && images.shape[2] == config.imageSize && images.shape[3] == config.imageSize,
            "this model takes [B, \(config.channels), \(config.imageSize), \(config.imageSize)] images, got \(images.shape)")
        let b = images.shape[0], d = config.width
        var x = patchEmbed(images.cast(to: computeDType))  // [B, N, D]
        let positions = positionTable
        if config.noEmbedClass, let positions { x = x + positions }  // patches only
        var prefix: [Tensor] = []
        if let clsToken { prefix.append(clsToken.expand(to: [b, 1, d])) }  // [B, 1, D]
        if let distToken { prefix.append(distToken.expand(to: [b, 1, d])) }
        if !prefix.isEmpty { x = Tensor.concat(prefix + [x], axis: 1) }  // [B, prefix + N, D]
        if !config.noEmbedClass, let positions { x = x + positions }
        x = posDrop(x)

        let encoded = BlockStack(blocks)(x, keepOutputs: keepBlockOutputs, keepAttentions: keepAttentions)  // [B, T, D]
        return (norm.map { $0(encoded.output) } ?? encoded.output, encoded.outputs, encoded.attentions)
    }

    /// tokens [B, T, D] (compute dtype) -> pooled features, logits and a distilled model's heads, float32.
    private func heads(_ x: Tensor) -> ViTOutputs {
        let prefixCount = config.prefixTokens
        var pooled: Tensor  // [B, D]
        switch config.pooling {
        case .token: pooled = x.slice(axis: 1, start: 0, length: 1).squeeze(1)
        case .avg: pooled = x.slice(axis: 1, start: prefixCount, length: config.patchCount).mean(axis: 1)
        }
        if let fcNorm { pooled = fcNorm(pooled) }
        if let preLogits { pooled = preLogits(pooled) }

        // Whatever the compute precision, what comes out is float32.
        var outputs = ViTOutputs(logits: pooled.cast(to: .float32), preLogits: pooled.cast(to: .float32), finalTokens: x.cast(to: .float32))
        guard let head else { return outputs }
        outputs.logits = head(pooled).cast(to: .float32)  // [B, classes]
        if let headDist {
            var distilled = x.slice(axis: 1, start: 1, length: 1).squeeze(1)  // distillation token [B, D]
            // With average pooling the tokens leave the blocks unnormalised (fc_norm follows the pooling): the
            // distillation token goes through the same fc_norm. (timm's distilled models pool tokens: no fc_norm.)
            if config.pooling == .avg, let fcNorm { distilled = fcNorm(distilled) }
            if let preLogits { distilled = preLogits(distilled) }
            let distLogits = headDist(distilled).cast(to: .float32)
            outputs.classHeadLogits = outputs.logits
            outputs.distillationHeadLogits = distLogits
            // DeiT: in evaluation the two heads' logits are averaged; training uses both separately.
            outputs.logits = (outputs.logits + distLogits) * 0.5
        }
        return outputs
    }

    /// The dtype the model computes in: its weight matrices' (float32 unless `convertWeights(to:)` changed it).
    public var computeDType: DType { patchEmbed.proj.weight.dtype }

    /// Converts the weights for inference in `dtype`, once: every matrix (projections, patch kernel, position
    /// embeddings, class and distillation tokens) to `dtype`; LayerNorm scales and shifts and the biases stay float32
    /// (oneDNN takes them so, and they are where low precision would cost most). Images are cast to `dtype` on the
    /// way in, and every output comes back float32. Matmuls accumulate in float32; LayerNorm and softmax statistics
    /// are float32 inside oneDNN.
    public func convertWeights(to dtype: DType) {
        for (_, parameter) in namedParameters() where parameter.rank >= 2 { parameter.convert(to: dtype) }
        fixedPositions?.tensor.convert(to: dtype)
    }

    /// Marks the weight matrices and convolution kernels (the patch embedding, a hybrid's backbone) as read-only
    /// for inference, so that each matmul or convolution packs its weight once into the layout its primitive
    /// prefers. Training must not follow (an optimiser step would unfreeze them, at a cost).
    public func freezeForInference() {
        for (_, parameter) in namedParameters() where parameter.rank == 2 || parameter.rank == 4 {
            parameter.freezeForInference()
        }
    }

    /// Logits only.
    public func callAsFunction(_ images: Tensor) -> Tensor { forward(images).logits }

    /// Grid size (patches per side) of the position embedding this model was built with.
    public var grid: (h: Int, w: Int) { (config.gridSize, config.gridSize) }
}

extension ViTConfig {
    /// The options of this configuration's encoder blocks, with the given stochastic depth rate.
    func blockOptions(dropPath: Float = 0) -> Block.Options {
        var options = Block.Options()
        options.mlpRatio = mlpRatio
        options.qkvBias = qkvBias
        options.eps = layerNormEps
        options.dropout = dropout
        options.attentionDropout = attentionDropout
        options.activation = exactGELU ? .geluErf : .geluTanh
        options.dropPath = dropPath
        return options
    }
}
