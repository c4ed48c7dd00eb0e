import Foundation
import NN
import Tensors

/// What defines a masked autoencoder besides its encoder (a ViT, `encoder`): the decoder's shape, the masking and
/// the loss. HPM adds the loss predictor (`lossPredictor`).
public struct MAEConfig: Codable, Equatable, Sendable {
    /// The encoder: a ViT without a head (`numClasses` 0), fixed sin-cos position embeddings, token pooling.
    public var encoder: ViTConfig
    /// Decoder token width (MAE `decoder_embed_dim`, HF `decoder_hidden_size`).
    public var decoderWidth = 512
    public var decoderDepth = 8
    public var decoderHeads = 16
    public var decoderMLPRatio: Float = 4
    /// The fraction of patches removed (MAE: 0.75).
    public var maskRatio: Float = 0.75
    /// Reconstruct each patch normalised by its own mean and variance (MAE's `norm_pix_loss`).
    public var normPixLoss = false
    /// HPM: a second decoder that predicts each patch's reconstruction loss.
    public var lossPredictor = false

    public init(encoder: ViTConfig) {
        self.encoder = encoder
        self.encoder.numClasses = 0
        self.encoder.labels = nil
        self.encoder.pooling = .token
        self.encoder.positionEmbedding = .sincos2d
    }

    /// Patches the encoder sees: `int(N * (1 - mask_ratio))`, as MAE computes it (in double precision).
    public var keptPatches: Int { Int(Double(encoder.patchCount) * (1 - Double(maskRatio))) }
    /// Values per patch in the reconstruction: P·P·C.
    public var patchValues: Int { encoder.patchSize * encoder.patchSize * encoder.channels }

    public func validate() throws {
        try encoder.validate()
        var problems: [String] = []
        if !(1...65536).contains(decoderWidth) { problems.append("decoder width \(decoderWidth) is outside 1...65536") }
        if !(0...1024).contains(decoderDepth) { problems.append("decoder depth \(decoderDepth) is outside 0...1024") }
        if decoderHeads < 1 || decoderWidth % decoderHeads != 0 {
            problems.append("decoder width \(decoderWidth) is not divisible by \(decoderHeads) heads")
        }
        if !(decoderMLPRatio > 0 && decoderMLPRatio <= 64) { problems.append("decoder mlp ratio \(decoderMLPRatio) is outside (0, 64]") }
        if !(maskRatio >= 0 && maskRatio < 1) { problems.append("mask ratio \(maskRatio) is outside [0, 1)") }
        if encoder.width % 4 != 0 || decoderWidth % 4 != 0 {
            problems.append("sin-cos position embeddings need widths divisible by 4 (encoder \(encoder.width), decoder \(decoderWidth))")
        }
        if !encoder.classToken || encoder.distillationToken {
            problems.append("the encoder must have a class token and no distillation token")
        }
        if !problems.isEmpty { throw ConfigError(problems.joined(separator: "; ")) }
    }
}

/// Which patches of each image the encoder sees, as MAE's `random_masking` decides them: patches are shuffled
/// (by ascending noise, or in an order given outright), the first `keep` of the shuffle are kept, and `restore`
/// undoes the shuffle.
public struct PatchMask: Sendable {
    /// ids_keep: for each image the kept patch indices, in shuffled order [B][K].
    public let keep: [[Int]]
    /// ids_restore: for each image where each patch sits in the shuffled order [B][N].
    public let restore: [[Int]]
    /// For each image the removed patches, in patch order [B][N - K].
    public let removed: [[Int]]
    /// Patches per image.
    public let patchCount: Int

    /// From a shuffle (ids_shuffle [B][N], a permutation of 0..<N per image): the first `keep` entries are kept.
    public init(shuffle: [[Int]], keep: Int) {
        let n = shuffle.first?.count ?? 0
        precondition(keep >= 0 && keep <= n, "keeping \(keep) of \(n) patches")
        patchCount = n
        self.keep = shuffle.map { Array($0[..<keep]) }
        restore = shuffle.map { order in
            precondition(order.count == n && Set(order) == Set(0..<n), "a patch shuffle must be a permutation of 0..<\(n)")
            var restore = [Int](repeating: 0, count: n)
            for (position, patch) in order.enumerated() { restore[patch] = position }
            return restore
        }
        removed = shuffle.map { Array($0[keep...]).sorted() }
    }

    /// MAE's masking from per-patch noise [B, N]: patches with the smallest noise are kept (`argsort`, ties by index).
    public init(noise: Tensor, keep: Int) {
        precondition(noise.rank == 2, "noise must be [B, N], got \(noise.shape)")
        let (b, n) = (noise.shape[0], noise.shape[1])
        let values = noise.toArray()
        let shuffle = (0..<b).map { row in
            (0..<n).sorted { i, j in
                let (a, c) = (values[row * n + i], values[row * n + j])
                return a < c || (a == c && i < j)
            }
        }
        self.init(shuffle: shuffle, keep: keep)
    }

    /// Uniform noise from `rng` (as `torch.rand`), then `init(noise:keep:)`.
    public static func random(batch: Int, patches: Int, keep: Int, using rng: inout SeededGenerator) -> PatchMask {
        PatchMask(noise: Tensor.uniform([batch, patches], using: &rng), keep: keep)
    }

    /// Every patch kept, in order (what HPM's teacher sees).
    public static func none(batch: Int, patches: Int) -> PatchMask {
        PatchMask(shuffle: Array(repeating: Array(0..<patches), count: batch), keep: patches)
    }

    public var batch: Int { keep.count }

    /// [B, N]: 1 where a patch is removed, 0 where kept (MAE's `mask`).
    public var tensor: Tensor {
        let out = Tensor.zeros([batch, patchCount])
        let p = out.pointer
        for (row, patches) in removed.enumerated() { for patch in patches { p[row * patchCount + patch] = 1 } }
        return out
    }
}

/// What one forward pass of a masked autoencoder gives.
public struct MAEOutputs {
    /// The encoder's output: the class token and the kept patches in kept order, after the final norm [B, 1 + K, D].
    public var latent: Tensor
    /// The decoder's prediction for every patch, in patch order [B, N, P·P·C] (a patch's values ordered (row,
    /// column, channel)).
    public var prediction: Tensor
    /// HPM: the predicted reconstruction loss of every patch [B, N].
    public var predictedLoss: Tensor?
}

/// The reconstruction loss and its parts.
public struct ReconstructionLoss {
    /// Mean squared error over the removed patches (and over each patch's values) [].
    public var loss: Tensor
    /// Each patch's mean squared error [B, N], removed and kept (what HPM ranks), cut from the graph.
    public var perPatch: Tensor
    /// Each image's loss over its removed patches [B].
    public var perImage: [Float]
}

/// Masked autoencoder (He et al. 2022, facebookresearch/mae `models_mae.py`) with its parameters named as the official
/// checkpoints name them: the encoder is a ViT that sees only the kept patches; the decoder embeds its output into
/// a narrower width, puts a shared mask token where each removed patch was, adds its own fixed position embeddings,
/// and predicts every patch's pixels. With `lossPredictor`, Hard Patches Mining's second decoder
/// (Haochen-Wang409/HPM `models_mae_learn_loss.py`): blocks, norm and a P·P·C projection averaged to one number per
/// patch, reading the same decoder input as the reconstructor.
public final class MaskedAutoencoder: Module {
    public let config: MAEConfig
    // Encoder (a ViT: `encoderStateDict()` names these as `VisionTransformer` does).
    public let patchEmbed: PatchEmbedding
    public let clsToken: Tensor  // [1, 1, D]
    /// Fixed sin-cos, class slot zero [1, 1 + N, D]; saved as `pos_embed` beside the parameters, as MAE saves it.
    let positions: FixedTensor
    public let blocks: [Block]
    public let norm: LayerNorm
    // Decoder.
    public let decoderEmbed: Linear  // D -> Dd
    public let maskToken: Tensor  // [1, 1, Dd]
    let decoderPositions: FixedTensor  // [1, 1 + N, Dd]
    public let decoderBlocks: [Block]
    public let decoderNorm: LayerNorm
    public let decoderPred: Linear  // Dd -> P·P·C
    // HPM's loss predictor.
    public let decoderBlocksLosspred: [Block]?
    public let decoderNormLosspred: LayerNorm?
    public let decoderPredLosspred: Linear?  // Dd -> P·P·C, averaged per patch

    /// Initialised as MAE initialises: Xavier-uniform linears (and patch kernel), zero biases, normal(0.02) class and
    /// mask tokens.
    public init(_ config: MAEConfig) throws {
        try config.validate()
        self.config = config
        let e = config.encoder, d = e.width, dd = config.decoderWidth
        patchEmbed = PatchEmbedding(width: d, channels: e.channels, patchSize: e.patchSize)
        clsToken = Init.normal([1, 1, d], std: 0.02)
        positions = FixedTensor(Self.sinCosWithClassSlot(grid: e.gridSize, width: d))
        blocks = (0..<e.depth).map { _ in Block(dim: d, heads: e.heads, options: e.blockOptions()) }
        norm = LayerNorm(d, eps: e.layerNormEps)
        decoderEmbed = Linear(d, dd)
        maskToken = Init.normal([1, 1, dd], std: 0.02)
        decoderPositions = FixedTensor(Self.sinCosWithClassSlot(grid: e.gridSize, width: dd))
        var decoderOptions = e.blockOptions()
        decoderOptions.mlpRatio = config.decoderMLPRatio
        func decoder() -> [Block] {
            (0..<config.decoderDepth).map { _ in Block(dim: dd, heads: config.decoderHeads, options: decoderOptions) }
        }
        decoderBlocks = decoder()
        decoderNorm = LayerNorm(dd, eps: e.layerNormEps)
        decoderPred = Linear(dd, config.patchValues)
        decoderBlocksLosspred = config.lossPredictor ? decoder() : nil
        decoderNormLosspred = config.lossPredictor ? LayerNorm(dd, eps: e.layerNormEps) : nil
        decoderPredLosspred = config.lossPredictor ? Linear(dd, config.patchValues) : nil
        super.init()
        // MAE's `_init_weights`: Xavier-uniform for every Linear (qkv as one [3D, D] matrix), biases zero.
        for linear in modules().compactMap({ $0 as? Linear }) { Init.xavierUniform(into: linear.weight) }
        clsToken.requiresGrad = true
        maskToken.requiresGrad = true
    }

    /// [1, 1 + g·g, width]: a zero row for the class token, then the 2-D sin-cos table (MAE's
    /// `get_2d_sincos_pos_embed(..., cls_token=True)`).
    static func sinCosWithClassSlot(grid: Int, width: Int) -> Tensor {
        let table = PositionEmbeddings.sinCos2D(gridHeight: grid, gridWidth: grid, width: width)
        return Tensor.concat([Tensor.zeros([1, 1, width]), table], axis: 1)
    }

    /// The fixed position embeddings as MAE's checkpoints hold them (`pos_embed`, `decoder_pos_embed`).
    public var positionEmbeddings: [String: Tensor] {
        ["pos_embed": positions.tensor, "decoder_pos_embed": decoderPositions.tensor]
    }

    // MARK: Forward

    /// images [B, C, H, W] (normalised) -> the encoder's output on the kept patches [B, 1 + K, D].
    public func encode(_ images: Tensor, mask: PatchMask) -> Tensor {
        let b = images.shape[0], d = config.encoder.width, n = config.encoder.patchCount
        precondition(mask.batch == b && mask.patchCount == n, "a mask of \(mask.batch)x\(mask.patchCount) for \(b) images of \(n) patches")
        let table = positions.tensor  // [1, 1 + N, D]
        var x = patchEmbed(images) + table.slice(axis: 1, start: 1, length: n)  // [B, N, D]
        x = x.gather(axis: 1, mask.keep)  // [B, K, D], in kept order
        let cls = (clsToken + table.slice(axis: 1, start: 0, length: 1)).expand(to: [b, 1, d])  // [B, 1, D]
        x = Tensor.concat([cls, x], axis: 1)  // [B, 1 + K, D]
        return norm(BlockStack(blocks)(x).output)  // the encoder's blocks, as a ViT runs them
    }

    /// latent [B, 1 + K, D] -> the prediction for every patch [B, N, P·P·C] and, with the loss predictor, each
    /// patch's predicted loss [B, N].
    public func decode(_ latent: Tensor, mask: PatchMask) -> (prediction: Tensor, predictedLoss: Tensor?) {
        let tokens = decoderInput(latent, mask: mask)
        let h = BlockStack(decoderBlocks)(tokens).output
        let prediction = decoderPred(decoderNorm(h)).slice(axis: 1, start: 1, length: config.encoder.patchCount)  // [B, N, P·P·C]
        return (prediction, predictLoss(tokens))
    }

    /// The decoders' shared input: latent [B, 1 + K, Dd] embedded, the mask token where each removed patch was, in
    /// patch order, plus the decoder's positions [B, 1 + N, Dd].
    func decoderInput(_ latent: Tensor, mask: PatchMask) -> Tensor {
        let b = latent.shape[0], k = latent.shape[1] - 1, n = config.encoder.patchCount, dd = config.decoderWidth
        let x = decoderEmbed(latent)  // [B, 1 + K, Dd]
        var patches = x.slice(axis: 1, start: 1, length: k)  // [B, K, Dd]
        if k < n { patches = Tensor.concat([patches, maskToken.expand(to: [b, n - k, dd])], axis: 1) }  // [B, N, Dd] shuffled
        patches = patches.gather(axis: 1, mask.restore)  // [B, N, Dd] in patch order
        // HPM's code concatenates visible then mask tokens without unshuffling; attention does not see order, so
        // every patch's output is the same either way.
        return Tensor.concat([x.slice(axis: 1, start: 0, length: 1), patches], axis: 1) + decoderPositions.tensor  // [B, 1 + N, Dd]
    }

    /// HPM's loss predictor on the decoder input [B, 1 + N, Dd]: each patch's predicted loss [B, N]; nil without one.
    func predictLoss(_ tokens: Tensor) -> Tensor? {
        guard let lossBlocks = decoderBlocksLosspred, let lossNorm = decoderNormLosspred, let lossPred = decoderPredLosspred else {
            return nil
        }
        let l = BlockStack(lossBlocks)(tokens).output  // HPM: `loss_pred = x.clone()`, the same decoder input
        return lossPred(lossNorm(l)).slice(axis: 1, start: 1, length: config.encoder.patchCount).mean(axis: -1)  // [B, N]
    }

    /// HPM's teacher: every patch's predicted loss [B, N] on the whole image (nothing removed), without the
    /// reconstruction the mask choice does not use. Needs the loss predictor.
    public func predictedLossOnWholeImages(_ images: Tensor) -> Tensor {
        let mask = PatchMask.none(batch: images.shape[0], patches: config.encoder.patchCount)
        guard let predicted = predictLoss(decoderInput(encode(images, mask: mask), mask: mask)) else {
            preconditionFailure("an autoencoder without HPM's loss predictor predicts no losses")
        }
        return predicted
    }

    public func forward(_ images: Tensor, mask: PatchMask) -> MAEOutputs {
        let latent = encode(images, mask: mask)
        let (prediction, predictedLoss) = decode(latent, mask: mask)
        return MAEOutputs(latent: latent, prediction: prediction, predictedLoss: predictedLoss)
    }

    // MARK: Loss

    /// images [B, C, H, W] -> patches [B, N, P·P·C], each patch's values ordered (row, column, channel) (MAE's
    /// `patchify`).
    public func patchify(_ images: Tensor) -> Tensor {
        let (b, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let p = config.encoder.patchSize
        return images.reshape([b, c, h / p, p, w / p, p])  // [B, C, gh, P, gw, P]
            .permute([0, 2, 4, 3, 5, 1])  // [B, gh, gw, P, P, C]
            .reshape([b, (h / p) * (w / p), p * p * c])
    }

    /// patches [B, N, P·P·C] -> images [B, C, H, W] (MAE's `unpatchify`).
    public func unpatchify(_ patches: Tensor) -> Tensor {
        let b = patches.shape[0], p = config.encoder.patchSize, g = config.encoder.gridSize, c = config.encoder.channels
        return patches.reshape([b, g, g, p, p, c])
            .permute([0, 5, 1, 3, 2, 4])  // [B, C, g, P, g, P]
            .reshape([b, c, g * p, g * p])
    }

    /// What the decoder should predict: the normalised pixels of each patch, or with `normPixLoss` each patch
    /// standardised by its own mean and unbiased variance, (t - mean) / sqrt(var + 1e-6) [B, N, P·P·C].
    public func target(_ images: Tensor) -> Tensor {
        Autograd.withNoGrad {
            let patches = patchify(images)
            guard config.normPixLoss else { return patches }
            let values = Float(config.patchValues)
            let mean = patches.mean(axis: -1, keepDim: true)  // [B, N, 1]
            let centred = patches - mean
            let variance = centred.square().sum(axis: -1, keepDim: true) / (values - 1)  // unbiased, as torch.var
            return centred / (variance + 1e-6).sqrt()
        }
    }

    /// MAE's `forward_loss`: the mean squared error of `prediction` against `target(images)`, over the removed
    /// patches only.
    public func reconstructionLoss(_ images: Tensor, prediction: Tensor, mask: PatchMask) -> ReconstructionLoss {
        let perPatch = (prediction - target(images)).square().mean(axis: -1)  // [B, N]
        let removed = mask.tensor  // [B, N]
        let count = Float(mask.removed.reduce(0) { $0 + $1.count })
        let loss = (perPatch * removed).sum() / max(count, 1)
        let values = perPatch.detach().toArray(), n = mask.patchCount
        let perImage = mask.removed.enumerated().map { row, patches in
            patches.isEmpty ? 0 : patches.reduce(Float(0)) { $0 + values[row * n + $1] } / Float(patches.count)
        }
        return ReconstructionLoss(loss: loss, perPatch: perPatch.detach(), perImage: perImage)
    }

    // MARK: The encoder as a ViT

    /// The encoder's tensors as a `VisionTransformer` names them (with `pos_embed`), for fine-tuning, embedding
    /// and inspection; shares storage with this model.
    public func encoderStateDict() -> [String: Tensor] {
        var out: [String: Tensor] = ["pos_embed": positions.tensor]
        for (name, tensor) in namedParameters() where !name.hasPrefix("decoder") && name != "mask_token" { out[name] = tensor }
        return out
    }

    /// The encoder as a classifier-less ViT with learned position embeddings initialised to the sin-cos table (as
    /// MAE's fine-tuning starts), sharing nothing with this model.
    public func encoderModel() throws -> VisionTransformer {
        var config = self.config.encoder
        config.positionEmbedding = .learned
        let model = try Init.withoutDrawing { try VisionTransformer(config) }
        try model.load(stateDict: encoderStateDict().mapValues { $0.copy() })
        return model
    }
}
