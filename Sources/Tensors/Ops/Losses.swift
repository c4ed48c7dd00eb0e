/// Losses: cross-entropy from logits (integer or soft targets, label smoothing) and mean-squared error.

extension Tensor {
    /// Mean cross-entropy of logits [B, C] against integer class targets, as `torch.nn.functional.cross_entropy`:
    /// with label smoothing ε the target is (1 - ε) on the class plus ε/C spread over all classes.
    public func crossEntropy(targets: [Int], labelSmoothing: Float = 0) -> Tensor {
        precondition(
            rank == 2 && targets.count == shape[0],
            "crossEntropy needs logits [B, C] and B targets, got \(shape) and \(targets.count)")
        return crossEntropy(softTargets: Tensor.oneHot(targets, classes: shape[1]), labelSmoothing: labelSmoothing)
    }

    /// Mean over the batch of -Σ_c target[b, c] · log softmax(logits)[b, c], for targets that are distributions
    /// (mixup, cutmix). Label smoothing mixes each target with the uniform distribution first.
    public func crossEntropy(softTargets: Tensor, labelSmoothing: Float = 0) -> Tensor {
        precondition(
            rank == 2 && softTargets.shape == shape,
            "crossEntropy needs logits [B, C] and targets of the same shape, got \(shape) and \(softTargets.shape)")
        precondition(labelSmoothing >= 0 && labelSmoothing < 1, "label smoothing \(labelSmoothing) outside [0, 1)")
        let classes = Float(shape[1])
        let targets =
            labelSmoothing > 0
            ? softTargets * (1 - labelSmoothing) + labelSmoothing / classes : softTargets
        let logProbabilities = logSoftmax()  // [B, C]
        return -(logProbabilities * targets).sum(axis: 1).mean()  // []
    }

    /// Mean of (self - target)² over every element.
    public func mseLoss(_ target: Tensor) -> Tensor {
        (self - target).square().mean()
    }
}
