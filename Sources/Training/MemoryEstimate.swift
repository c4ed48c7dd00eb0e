import Foundation
import ViT

/// What one training step of a ViT will hold in memory, estimated before anything is allocated, so that a run that
/// cannot fit is refused with numbers instead of being killed by the kernel an hour later.
///
/// Per block the autograd tape keeps, for B images of T tokens of width D (MLP width M, H heads), about
/// 16·B·T·D floats (norm inputs and outputs, q/k/v and their head-major copies, attention output, projections,
/// residuals), 2·B·T·M (fc1 and GELU) and 2·B·H·T² (scores and softmax); the weights take 16 bytes a parameter
/// (weights, gradients, two AdamW moments). Checked against the peak RSS of `vit bench model --train`:
/// vit_cifar_patch4_32 at batch 128 estimates 1.53 GiB, measured 1.35 GiB; vit_small_patch16_224 at batch 16
/// estimates 2.32 GiB, measured 2.22 GiB (the estimate errs high).
public struct MemoryEstimate: Sendable {
    public let config: ViTConfig
    public let batchSize: Int
    /// Bytes of the data set held in memory (8-bit images).
    public let dataBytes: Int

    public init(config: ViTConfig, batchSize: Int, dataBytes: Int = 0) {
        self.config = config
        self.batchSize = batchSize
        self.dataBytes = dataBytes
    }

    /// Activations of one step, in bytes (grows with the square of the token count through attention).
    public var activationBytes: Double {
        let b = Double(batchSize), t = Double(config.tokenCount), d = Double(config.width)
        let m = Double(config.mlpHiddenSize), h = Double(config.heads)
        let perBlock = 16 * b * t * d + 2 * b * t * m + 2 * b * h * t * t
        return 4 * 1.1 * perBlock * Double(config.depth)
    }

    public var parameterCount: Double {
        let d = Double(config.width), m = Double(config.mlpHiddenSize)
        let perBlock = 4 * d * d + 2 * d * m
        let patch = Double(config.channels * config.patchSize * config.patchSize) * d
        return perBlock * Double(config.depth) + patch + Double(config.tokenCount) * d + d * Double(max(config.numClasses, 1))
    }

    /// Everything: activations, weights with their gradients and optimiser state, the data, and the process itself.
    public var totalBytes: Double { activationBytes + 16 * parameterCount + Double(dataBytes) + 200 * 1024 * 1024 }

    /// The largest batch size whose step fits in `bytes`, or nil if not even one image does.
    public func largestBatch(fitting bytes: Double) -> Int? {
        var fits: Int?
        var candidate = 1
        while candidate <= batchSize {
            guard MemoryEstimate(config: config, batchSize: candidate, dataBytes: dataBytes).totalBytes <= bytes else { break }
            fits = candidate
            candidate *= 2
        }
        return fits
    }

    /// The memory the kernel says can be had now (`MemAvailable` in /proc/meminfo), or nil where it cannot tell.
    public static func availableBytes() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let parts = line.split(separator: " ")
            if parts.count >= 2, let kib = Double(parts[1]) { return kib * 1024 }
        }
        return nil
    }

    /// Throws, with the estimate and what to change, when one step will not fit in `available` bytes.
    public func check(available: Double?) throws {
        guard let available, totalBytes > available else { return }
        func gib(_ bytes: Double) -> String { String(format: "%.1f GiB", bytes / 1_073_741_824) }
        var advice: [String] = []
        if let batch = largestBatch(fitting: available), batch < batchSize { advice.append("--batch-size \(batch) fits") }
        advice.append("a smaller --image-size or a larger --patch-size shortens the \(config.tokenCount)-token sequence")
        throw TrainingError.badOptions(
            "one training step needs about \(gib(totalBytes)) (\(config.tokenCount) tokens of width \(config.width), "
                + "\(config.depth) blocks, batch \(batchSize), \(config.imageSize) px images), more than the \(gib(available)) "
                + "available; " + advice.joined(separator: "; "))
    }
}
