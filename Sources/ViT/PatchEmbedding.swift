import NN
import Tensors

/// The weights of a convolution with kernel = stride = patch size, kept in conv layout so checkpoints load as is.
public final class PatchProjection: Module {
    public let weight: Tensor  // [D, C, P, P]
    public let bias: Tensor  // [D]

    init(width: Int, channels: Int, patchSize: Int) {
        // Xavier-uniform over the weight viewed as a [D, C·P·P] matrix, as the JAX ViT and MAE initialise it.
        weight = Init.xavierUniform([width, channels * patchSize * patchSize]).reshape([width, channels, patchSize, patchSize])
        bias = Init.zeros([width])
        super.init()
        weight.requiresGrad = true
        bias.requiresGrad = true
    }
}

/// Image -> patch tokens: cut into P x P patches, each projected linearly to the token width. Computed as one matmul
/// over the flattened patches, which equals the conv with kernel = stride = P.
///
/// In a hybrid ViT (timm `HybridEmbed`) a ResNet runs first and its feature map is what is cut into patches.
public final class PatchEmbedding: Module {
    public let backbone: ResNetV2?
    public let proj: PatchProjection
    public let patchSize: Int

    public init(width: Int, channels: Int, patchSize: Int, backbone: HybridBackbone? = nil) {
        self.backbone = backbone.map { ResNetV2($0, channels: channels) }
        proj = PatchProjection(width: width, channels: backbone?.outChannels ?? channels, patchSize: patchSize)
        self.patchSize = patchSize
        super.init()
    }

    /// images [B, C, H, W] -> tokens [B, (H/P)·(W/P), D], patches in row-major order (a hybrid: H and W of the
    /// backbone's feature map).
    public func callAsFunction(_ input: Tensor) -> Tensor {
        let images = backbone.map { $0(input) } ?? input  // hybrid: [B, C', H / stride, W / stride]
        precondition(images.rank == 4, "images must be [B, C, H, W], got \(images.shape)")
        let (b, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let p = patchSize
        precondition(h % p == 0 && w % p == 0, "image \(h)x\(w) is not a multiple of the patch size \(p)")
        precondition(c == proj.weight.shape[1], "image has \(c) channels, the patch embedding expects \(proj.weight.shape[1])")
        let (gh, gw) = (h / p, w / p)
        let patches =
            images
            .reshape([b, c, gh, p, gw, p])  // [B, C, gh, P, gw, P]
            .permute([0, 2, 4, 1, 3, 5])  // [B, gh, gw, C, P, P]
            .reshape([b, gh * gw, c * p * p])  // [B, N, C·P·P]
        let weight = proj.weight.reshape([proj.weight.shape[0], c * p * p])  // [D, C·P·P], conv layout flattened
        return patches.linear(weight: weight, bias: proj.bias)  // [B, N, D]
    }
}
