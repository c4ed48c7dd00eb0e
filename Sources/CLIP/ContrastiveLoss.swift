import Foundation
import Tensors

/// CLIP's training objective (Radford et al. 2021, open_clip `ClipLoss`): in a batch of B image-caption pairs, image
/// i should match caption i among the B captions and caption i image i among the B images. With unit embeddings
/// and a learned temperature, logits = exp(logit_scale) · images · textsᵀ [B, B]; the loss is the mean of the
/// cross-entropy of each row (image -> captions) and of each column (caption -> images) against the diagonal.
extension CLIPModel {
    /// Symmetric InfoNCE over image embeddings [B, E] and text embeddings [B, E] of matching pairs (row i with row i).
    public func contrastiveLoss(imageEmbeddings: Tensor, textEmbeddings: Tensor) -> Tensor {
        precondition(
            imageEmbeddings.shape == textEmbeddings.shape && imageEmbeddings.rank == 2,
            "contrastive loss of images \(imageEmbeddings.shape) and texts \(textEmbeddings.shape)")
        let logitsPerImage = logits(imageEmbeddings: imageEmbeddings, textEmbeddings: textEmbeddings)  // [B, B]
        let pairs = Array(0..<imageEmbeddings.shape[0])
        let imageToText = logitsPerImage.crossEntropy(targets: pairs)
        let textToImage = logitsPerImage.transpose(0, 1).crossEntropy(targets: pairs)
        return (imageToText + textToImage) * 0.5
    }

    /// The largest temperature scale CLIP allows: logits at most 100 x cosine similarity.
    public static let maximumLogitScale = Float(Foundation.log(100.0))

    /// Clamps `logit_scale` into [0, ln 100] after an optimiser step, as open_clip's training loop does (it
    /// "prevents scaling the logits by more than 100, for training stability").
    public func clampLogitScale() {
        let value = logitScale.item()
        let clamped = min(max(value, 0), Self.maximumLogitScale)
        if clamped != value { logitScale.assign(Tensor(scalar: clamped)) }
    }
}
