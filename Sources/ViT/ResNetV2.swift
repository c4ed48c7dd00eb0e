import Foundation
import NN
import Tensors

/// The ResNet under a hybrid ViT (ViT paper, Section 3.1; timm `vision_transformer_hybrid.py`'s `_resnetv2`): timm's
/// `ResNetV2` without pre-activation (BiT's v1.5-style bottlenecks), weight-standardised convolutions with TensorFlow
/// "same" padding, group normalisation; its last feature map becomes the ViT's patches.
public struct HybridBackbone: Codable, Equatable, Sendable {
    /// Bottleneck blocks per stage (R50: [3, 4, 9]; R26: [2, 2, 2, 2]).
    public var layers: [Int] = [3, 4, 9]
    public var stemWidth = 64
    /// Stage i outputs 256 · 2^i channels (a quarter of that inside its bottlenecks).
    public var baseWidth = 256
    public var convEps: Float = 1e-8
    /// Where the standardisation's eps goes: nil or false, inside the square root (timm's `StdConv2dSame`); true,
    /// added to the standard deviation (the JAX `StdConv` of the original R50+ViT, with eps 1e-5).
    public var convEpsOnStandardDeviation: Bool?
    public var normGroups = 32
    public var normEps: Float = 1e-5

    public init(layers: [Int] = [3, 4, 9]) { self.layers = layers }

    /// How the backbone's convolutions standardise their weights.
    public var standardization: WeightStandardization {
        WeightStandardization(eps: convEps, epsOnStandardDeviation: convEpsOnStandardDeviation ?? false)
    }

    /// Input pixels per feature-map position: 4 from the stem, then 2 per stage after the first.
    public var stride: Int { 4 << max(layers.count - 1, 0) }
    public func width(ofStage i: Int) -> Int { baseWidth << i }
    public var outChannels: Int { width(ofStage: layers.count - 1) }

    public func validate() throws {
        var problems: [String] = []
        if !(1...8).contains(layers.count) || layers.contains(where: { !(1...64).contains($0) }) {
            problems.append("backbone layers \(layers): 1 to 8 stages of 1 to 64 blocks")
        }
        if !(1...4096).contains(stemWidth) || !(4...4096).contains(baseWidth) || !(1...4096).contains(normGroups) {
            problems.append("backbone widths (stem \(stemWidth), base \(baseWidth), \(normGroups) groups) out of range")
        } else if stemWidth % normGroups != 0 || (baseWidth / 4) % normGroups != 0 {
            problems.append("backbone widths must divide into \(normGroups) groups")
        }
        if !problems.isEmpty { throw ConfigError(problems.joined(separator: "; ")) }
    }
}

/// Stem: a 7x7 stride-2 standardised convolution, group norm + ReLU, a 3x3 stride-2 max pool, all "same"-padded.
public final class ResNetV2Stem: Module {
    public let conv: Conv2d
    public let norm: GroupNorm

    init(_ b: HybridBackbone, channels: Int) {
        conv = Conv2d(channels, b.stemWidth, kernel: 7, stride: 2, padding: .same, standardization: b.standardization)
        norm = GroupNorm(groups: b.normGroups, channels: b.stemWidth, eps: b.normEps, relu: true)
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        norm(conv(x)).maxPool2d(kernel: 3, stride: 2, padding: .same)
    }
}

/// timm's `DownsampleConv` without pre-activation: a 1x1 standardised convolution and group norm.
public final class ResNetV2Downsample: Module {
    public let conv: Conv2d
    public let norm: GroupNorm

    init(_ b: HybridBackbone, in inChannels: Int, out: Int, stride: Int) {
        conv = Conv2d(inChannels, out, kernel: 1, stride: stride, padding: .same, standardization: b.standardization)
        norm = GroupNorm(groups: b.normGroups, channels: out, eps: b.normEps)
        super.init()
    }
}

/// timm `resnetv2.Bottleneck` (non-pre-activation): 1x1 -> 3x3 (stride) -> 1x1, each followed by group norm (ReLU
/// after the first two), the shortcut added, then ReLU.
public final class ResNetV2Bottleneck: Module {
    public let downsample: ResNetV2Downsample?
    public let conv1: Conv2d
    public let norm1: GroupNorm
    public let conv2: Conv2d
    public let norm2: GroupNorm
    public let conv3: Conv2d
    public let norm3: GroupNorm

    init(_ b: HybridBackbone, in inChannels: Int, out: Int, stride: Int) {
        let mid = out / 4
        let standardization = b.standardization
        downsample = stride != 1 || inChannels != out ? ResNetV2Downsample(b, in: inChannels, out: out, stride: stride) : nil
        conv1 = Conv2d(inChannels, mid, kernel: 1, padding: .same, standardization: standardization)
        norm1 = GroupNorm(groups: b.normGroups, channels: mid, eps: b.normEps, relu: true)
        conv2 = Conv2d(mid, mid, kernel: 3, stride: stride, padding: .same, standardization: standardization)
        norm2 = GroupNorm(groups: b.normGroups, channels: mid, eps: b.normEps, relu: true)
        conv3 = Conv2d(mid, out, kernel: 1, padding: .same, standardization: standardization)
        norm3 = GroupNorm(groups: b.normGroups, channels: out, eps: b.normEps)
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let shortcut = downsample.map { $0.norm($0.conv(x)) } ?? x
        let h = norm3(conv3(norm2(conv2(norm1(conv1(x))))))
        return (h + shortcut).relu()
    }
}

public final class ResNetV2Stage: Module {
    public let blocks: [ResNetV2Bottleneck]

    init(_ b: HybridBackbone, in inChannels: Int, out: Int, stride: Int, depth: Int) {
        blocks = (0..<depth).map { i in ResNetV2Bottleneck(b, in: i == 0 ? inChannels : out, out: out, stride: i == 0 ? stride : 1) }
        super.init()
    }
}

/// The backbone: stem, then stages (the first at stride 1, each later one halving the resolution); timm's names
/// (`stem.conv`, `stages.i.blocks.j.conv1`, ...).
public final class ResNetV2: Module {
    public let backbone: HybridBackbone
    public let stem: ResNetV2Stem
    public let stages: [ResNetV2Stage]

    public init(_ backbone: HybridBackbone, channels: Int = 3) {
        self.backbone = backbone
        stem = ResNetV2Stem(backbone, channels: channels)
        var inChannels = backbone.stemWidth
        stages = backbone.layers.enumerated().map { i, depth in
            defer { inChannels = backbone.width(ofStage: i) }
            return ResNetV2Stage(backbone, in: inChannels, out: backbone.width(ofStage: i), stride: i == 0 ? 1 : 2, depth: depth)
        }
        super.init()
    }

    /// images [B, C, H, W] -> the last stage's feature map [B, outChannels, H / stride, W / stride].
    public func callAsFunction(_ images: Tensor) -> Tensor {
        var x = stem(images)
        for stage in stages { for block in stage.blocks { x = block(x) } }
        return x
    }
}
