import Foundation
import Tensors

/// Hard Patches Mining (Wang et al., CVPR 2023; Haochen-Wang409/HPM `models_mae_learn_loss.py`,
/// `engine_pretrain.py`): an MAE whose second decoder predicts each patch's reconstruction loss, trained to rank
/// patches as their true losses rank them; a teacher (an exponential moving average of the model) predicts the losses
/// on the whole image, and the patches it predicts hardest are masked, a growing share of them over training.
public enum HardPatchesMining {
    /// The teacher's EMA decay in `epoch` (0-based): 0.999 rising linearly to 0.9999 over the first 100 epochs, then
    /// 0.9999 (`engine_pretrain.py`; set once per epoch, as there).
    public static func teacherDecay(epoch: Int) -> Float {
        epoch < 100 ? 0.999 + Float(epoch) / 100 * (0.9999 - 0.999) : 0.9999
    }

    /// The share of the removed patches chosen by predicted loss in `epoch` of `epochs` (0-based): (epoch + 1) /
    /// epochs × 0.5, easy to hard; the rest are random (`generate_mask` with `guide=True`).
    public static func hardShare(epoch: Int, epochs: Int) -> Double {
        Double(epoch + 1) / Double(epochs) * 0.5
    }

    /// The student's mask from the teacher's predicted losses [B, N] (`generate_mask`): of the N - K patches to
    /// remove, `int((N - K) × hardShare)` are those with the highest predicted loss and the rest a random choice of
    /// the others; when that count is 0, the whole mask is random.
    public static func mask(
        predictedLoss: Tensor, keep: Int, epoch: Int, epochs: Int, using rng: inout SeededGenerator
    ) -> PatchMask {
        precondition(predictedLoss.rank == 2, "predicted losses must be [B, N], got \(predictedLoss.shape)")
        let (b, n) = (predictedLoss.shape[0], predictedLoss.shape[1])
        let hard = Int(Double(n - keep) * hardShare(epoch: epoch, epochs: epochs))
        let values = predictedLoss.toArray()
        let shuffle = (0..<b).map { row -> [Int] in
            guard hard > 0 else { return Array(0..<n).shuffled(using: &rng) }
            // Ascending predicted loss (argsort); the last `hard` are removed for sure.
            let ascending = (0..<n).sorted { i, j in
                let (a, c) = (values[row * n + i], values[row * n + j])
                return a < c || (a == c && i < j)
            }
            let hardest = Array(ascending[(n - hard)...])
            let chosen = Set(hardest)
            let others = (0..<n).filter { !chosen.contains($0) }.shuffled(using: &rng)
            return others + hardest  // kept first: the first `keep` of the shuffle
        }
        return PatchMask(shuffle: shuffle, keep: keep)
    }

    /// HPM's relative loss (`forward_learning_loss`, `relative=True`): for every ordered pair (i, j) of removed patches
    /// in one image, a binary classification of whether patch j's true loss exceeds patch i's from the difference of
    /// their predictions:
    /// -[t_j > t_i]·log(σ(p_j - p_i) + 1e-6) - [t_j < t_i]·log(1 - σ(p_j - p_i) + 1e-6), summed and divided by the
    /// number of pairs that are not ties, over the whole batch.
    /// predicted [B, M] (differentiable), target [B, M] (the true per-patch losses; no gradient).
    public static func rankingLoss(predicted: Tensor, target: Tensor) -> Tensor {
        precondition(
            predicted.rank == 2 && target.shape == predicted.shape,
            "ranking loss needs predictions and targets of one shape [B, M], got \(predicted.shape) and \(target.shape)")
        let (b, m) = (predicted.shape[0], predicted.shape[1])
        let t = target.detach().toArray()
        let positive = Tensor.zeros([b, m, m]), negative = Tensor.zeros([b, m, m])
        let pos = positive.pointer, neg = negative.pointer
        var pairs = 0
        for image in 0..<b {
            for i in 0..<m {
                for j in 0..<m {
                    let (ti, tj) = (t[image * m + i], t[image * m + j])
                    let index = (image * m + i) * m + j
                    if tj > ti { pos[index] = 1; pairs += 1 } else if tj < ti { neg[index] = 1; pairs += 1 }
                }
            }
        }
        // difference[b, i, j] = p_j - p_i
        let difference = predicted.unsqueeze(1) - predicted.unsqueeze(2)  // [B, M, M]
        let probability = difference.sigmoid()
        let terms = positive * (probability + 1e-6).log() + negative * ((1 - probability) + 1e-6).log()
        // No valid pair (every target tied): HPM's code divides by zero; a zero loss with zero gradient instead.
        return -terms.sum() / Float(max(pairs, 1))
    }
}
