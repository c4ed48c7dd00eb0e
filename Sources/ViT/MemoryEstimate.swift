import Foundation
import Tensors

/// What one training step, or one inference batch, will hold in memory, estimated before anything is allocated, so
/// that a run or a model that cannot fit is refused with numbers instead of being killed by the kernel (a run an hour
/// later; `predict` on a config.json asking for 16384 px at once).
///
/// A ViT: per block the autograd tape keeps, for B images of T tokens of width D (MLP width M, H heads), about
/// 16·B·T·D floats (norm inputs and outputs, q/k/v and their head-major copies, attention output, projections,
/// residuals), 2·B·T·M (fc1 and GELU) and 2·B·H·T² (scores and softmax); the weights take 16 bytes a parameter
/// (weights, gradients, two AdamW moments). Checked against the peak RSS of `vit bench model --train`:
/// vit_cifar_patch4_32 at batch 128 estimates 1.53 GiB, measured 1.35 GiB; vit_small_patch16_224 at batch 16
/// estimates 2.32 GiB, measured 2.22 GiB (the estimate errs high).
///
/// A ResNet: each convolution keeps its output (the batch norm's input) and the batch norm's output, and the
/// ReLU after it its own; a block's sum and final ReLU two more maps; times 1.35 for what the backward pass and the
/// kernels' layouts add. Parameters take 20 bytes (the four of a ViT's, and each weight reordered into the kernel's
/// layout). Against the peak RSS of `vit train --max-steps` (AdamW): resnet18 with the CIFAR stem at 32 px estimates
/// 1.73 GiB at batch 128 (measured 1.62) and 3.03 GiB at batch 256 (2.87); resnet50 at 64 px 1.19 GiB at batch 32
/// (1.20) and 2.17 GiB at batch 96 (2.02).
///
/// Inference keeps no tape: one block's buffers are live at a time (a ViT: about 8·B·T·D + 2·B·T·M + 2·B·H·T² floats;
/// a ResNet: four of its largest feature map), beside the weights (4 bytes a parameter, 8 for a ResNet's reordered
/// convolutions) and the batch of input images.
public struct MemoryEstimate: Sendable {
    public enum Purpose: Sendable {
        /// A training step: the tape, gradients and optimiser state.
        case training
        /// A forward pass without gradients.
        case inference
    }

    public let architecture: Architecture
    public let batchSize: Int
    /// Bytes of the data set held in memory (8-bit images).
    public let dataBytes: Int
    public let purpose: Purpose

    public init(architecture: Architecture, batchSize: Int, dataBytes: Int = 0, purpose: Purpose = .training) {
        self.architecture = architecture
        self.batchSize = batchSize
        self.dataBytes = dataBytes
        self.purpose = purpose
    }

    public init(config: ViTConfig, batchSize: Int, dataBytes: Int = 0, purpose: Purpose = .training) {
        self.init(architecture: .vit(config), batchSize: batchSize, dataBytes: dataBytes, purpose: purpose)
    }

    /// Too much for the memory there is: the estimate and what to change.
    public struct TooLarge: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Activations of one step or batch, in bytes (a ViT's grow with the square of the token count through
    /// attention).
    public var activationBytes: Double {
        let b = Double(batchSize)
        if purpose == .inference {
            switch architecture {
            case .vit(let config):
                let t = Double(config.tokenCount), d = Double(config.width)
                let m = Double(config.mlpHiddenSize), h = Double(config.heads)
                let pixels = Double(config.channels * config.imageSize * config.imageSize)
                return 4 * 1.1 * (8 * b * t * d + 2 * b * t * m + 2 * b * h * t * t) + 4 * b * pixels
            case .resnet(let config):
                return 4 * b * (4 * Self.largestMapFloats(config) + Double(3 * config.imageSize * config.imageSize))
            }
        }
        switch architecture {
        case .vit(let config):
            let t = Double(config.tokenCount), d = Double(config.width)
            let m = Double(config.mlpHiddenSize), h = Double(config.heads)
            let perBlock = 16 * b * t * d + 2 * b * t * m + 2 * b * h * t * t
            return 4 * 1.1 * perBlock * Double(config.depth)
        case .resnet(let config):
            return 4 * 1.35 * b * Self.keptFloatsPerImage(config)
        }
    }

    /// The floats a ResNet's tape keeps for one image: 3 maps per convolution + norm + ReLU, 2 per convolution + norm
    /// before a sum, 2 per sum + ReLU, 1 for the max pool.
    static func keptFloatsPerImage(_ config: ResNetConfig) -> Double {
        var size = config.cifarStem ? config.imageSize : (config.imageSize + 1) / 2  // after the stem's convolution
        var kept = 3.0 * Double(config.stemWidth * size * size)
        if !config.cifarStem {
            size = (size + 1) / 2  // 3x3 stride-2 max pool, padding 1
            kept += Double(config.stemWidth * size * size)
        }
        var inChannels = config.stemWidth
        for (stage, (count, planes)) in zip(config.layers, config.channels).enumerated() {
            for i in 0..<count {
                let stride = i == 0 && stage > 0 ? 2 : 1
                let inSize = size
                size = (size + stride - 1) / stride
                let out = planes * config.expansion, area = Double(size * size)
                switch config.block {
                case .basic:
                    kept += 3 * Double(planes) * area + 2 * Double(out) * area  // conv1-bn-relu, conv2-bn
                case .bottleneck:
                    // conv1 1x1 at the input's resolution, conv2 3x3 carries the stride, conv3 1x1 widens.
                    kept += 3 * Double(planes * inSize * inSize) + 3 * Double(planes) * area + 2 * Double(out) * area
                }
                if stride != 1 || inChannels != out { kept += 2 * Double(out) * area }  // downsample conv-bn
                kept += 2 * Double(out) * area  // sum, ReLU
                inChannels = out
            }
        }
        return kept
    }

    public var parameterCount: Double {
        switch architecture {
        case .vit(let config):
            let d = Double(config.width), m = Double(config.mlpHiddenSize)
            let perBlock = 4 * d * d + 2 * d * m
            let patch = Double(config.channels * config.patchSize * config.patchSize) * d
            return perBlock * Double(config.depth) + patch + Double(config.tokenCount) * d + d * Double(max(config.numClasses, 1))
        case .resnet(let config):
            var count = (config.cifarStem ? 9 : 49) * 3 * config.stemWidth
            var inChannels = config.stemWidth
            for (stage, (blocks, planes)) in zip(config.layers, config.channels).enumerated() {
                for i in 0..<blocks {
                    let out = planes * config.expansion
                    count +=
                        config.block == .basic
                        ? 9 * inChannels * planes + 9 * planes * planes : inChannels * planes + 9 * planes * planes + planes * out
                    if (i == 0 && stage > 0) || inChannels != out { count += inChannels * out }
                    inChannels = out
                }
            }
            return Double(count + inChannels * max(config.numClasses, 1))
        }
    }

    /// The floats of a ResNet's largest feature map for one image: the stem's output, or a bottleneck's widened map.
    static func largestMapFloats(_ config: ResNetConfig) -> Double {
        var size = config.cifarStem ? config.imageSize : (config.imageSize + 1) / 2
        var largest = Double(config.stemWidth * size * size)
        if !config.cifarStem { size = (size + 1) / 2 }
        for (stage, planes) in config.channels.enumerated() {
            if stage > 0 { size = (size + 1) / 2 }
            largest = max(largest, Double(planes * config.expansion) * Double(size * size))
        }
        return largest
    }

    /// Bytes a parameter takes while training (weights, gradients, two AdamW moments; a ResNet's reordered
    /// convolutions too), or for inference.
    private var bytesPerParameter: Double {
        switch (purpose, architecture) {
        case (.training, .resnet): return 20
        case (.training, .vit): return 16
        case (.inference, .resnet): return 8
        case (.inference, .vit): return 4
        }
    }

    /// Everything: activations, weights with their gradients and optimiser state, the data, and the process itself.
    public var totalBytes: Double { activationBytes + bytesPerParameter * parameterCount + Double(dataBytes) + 200 * 1024 * 1024 }

    /// The largest batch size whose step fits in `bytes`, or nil if not even one image does.
    public func largestBatch(fitting bytes: Double) -> Int? {
        var fits: Int?
        var candidate = 1
        while candidate <= batchSize {
            guard
                MemoryEstimate(architecture: architecture, batchSize: candidate, dataBytes: dataBytes, purpose: purpose).totalBytes <= bytes
            else { break }
            fits = candidate
            candidate *= 2
        }
        return fits
    }

    /// The memory the kernel says can be had now (`MemAvailable` in /proc/meminfo), or nil where it cannot tell.
    public static func availableBytes() -> Double? { SystemMemory.availableBytes().map(Double.init) }

    /// Throws unless one image's inference fits in the memory free now: what a loader checks before it builds a model
    /// from a configuration (the command checks its batch once the model is known).
    public static func checkInference(_ architecture: Architecture, batchSize: Int = 1) throws {
        try MemoryEstimate(architecture: architecture, batchSize: batchSize, purpose: .inference).check(available: availableBytes())
    }

    /// Throws, with the estimate and what to change, when one step will not fit in `available` bytes.
    public func check(available: Double?) throws {
        guard let available, totalBytes > available else { return }
        func gib(_ bytes: Double) -> String { String(format: "%.1f GiB", bytes / 1_073_741_824) }
        var advice: [String] = []
        if let batch = largestBatch(fitting: available), batch < batchSize { advice.append("--batch-size \(batch) fits") }
        let what: String
        switch architecture {
        case .vit(let config):
            advice.append(
                purpose == .training
                    ? "a smaller --image-size or a larger --patch-size shortens the \(config.tokenCount)-token sequence"
                    : "a smaller --image-size shortens the \(config.tokenCount)-token sequence")
            what =
                "\(config.tokenCount) tokens of width \(config.width), \(config.depth) blocks, batch \(batchSize), \(config.imageSize) px images"
        case .resnet(let config):
            advice.append(
                purpose == .training
                    ? "a smaller --image-size or --width shrinks every feature map" : "a smaller --image-size shrinks every feature map")
            what = "a ResNet of \(config.layers.reduce(0, +)) \(config.block) blocks, batch \(batchSize), \(config.imageSize) px images"
        }
        let needs = purpose == .training ? "one training step needs" : "inference needs"
        throw TooLarge(
            description: "\(needs) about \(gib(totalBytes)) (\(what)), more than the \(gib(available)) available; "
                + advice.joined(separator: "; "))
    }
}
