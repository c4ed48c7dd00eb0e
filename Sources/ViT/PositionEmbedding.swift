import Foundation
import Tensors

/// Position embeddings: resampling a learned grid to another size, and the fixed 2-D sine-cosine table.
public enum PositionEmbeddings {
    /// Resamples the grid part of a learned position embedding [1, prefix + gh·gw, D] to a new grid, keeping the
    /// class/distillation positions, with bicubic antialiased interpolation (align_corners = false): what timm's
    /// `resample_abs_pos_embed` does when a checkpoint is loaded into a model of another image or patch size.
    public static func resample(
        _ posEmbed: Tensor, prefixTokens: Int, from old: (h: Int, w: Int),
        to new: (h: Int, w: Int)
    ) -> Tensor {
        let width = posEmbed.shape[2]
        precondition(
            posEmbed.shape[1] == prefixTokens + old.h * old.w,
            "position embedding \(posEmbed.shape) does not hold \(prefixTokens) + \(old.h)x\(old.w) positions")
        if old == new { return posEmbed.copy() }
        let values = posEmbed.toArray()
        let prefix = Array(values[..<(prefixTokens * width)])
        let grid = Array(values[(prefixTokens * width)...])  // [gh, gw, D] channels-last
        let resampled = Resampling.resample(
            grid, height: old.h, width: old.w, channels: width,
            newHeight: new.h, newWidth: new.w, filter: .bicubic)
        return Tensor(prefix + resampled, shape: [1, prefixTokens + new.h * new.w, width])
    }

    /// The fixed 2-D sine-cosine embedding [1, gh·gw, D] (MAE / big_vision `posemb_sincos_2d`, temperature 10000):
    /// a quarter of the channels each for sin(y), cos(y), sin(x), cos(x) at geometric frequencies.
    public static func sinCos2D(gridHeight: Int, gridWidth: Int, width: Int, temperature: Double = 10_000) -> Tensor {
        precondition(width % 4 == 0, "sin-cos position embedding needs a width divisible by 4, got \(width)")
        let quarter = width / 4
        let omega = (0..<quarter).map { 1 / pow(temperature, Double($0) / Double(quarter)) }
        var values: [Float] = []
        values.reserveCapacity(gridHeight * gridWidth * width)
        for y in 0..<gridHeight {
            for x in 0..<gridWidth {
                // big_vision order: [sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)]
                values += omega.map { Float(sin(Double(x) * $0)) } + omega.map { Float(cos(Double(x) * $0)) }
                values += omega.map { Float(sin(Double(y) * $0)) } + omega.map { Float(cos(Double(y) * $0)) }
            }
        }
        return Tensor(values, shape: [1, gridHeight * gridWidth, width])
    }
}
