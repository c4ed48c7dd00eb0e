import Foundation

/// Named architectures, by timm's model names.
extension ViTConfig {
    /// (width, depth, heads) of each ViT size.
    static let sizes: [String: (width: Int, depth: Int, heads: Int)] = [
        "tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12),
        "large": (1024, 24, 16), "huge": (1280, 32, 16)
    ]

    /// The head count timm's standard ViTs use at each width (head dim 64): what a checkpoint without a config
    /// can be assumed to have.
    public static let standardHeads: [Int: Int] = [192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16]

    /// Every preset name this library knows: the ViT sizes with patch 8/14/16/32 at 224 and 384 (timm defines a
    /// subset of these combinations; the rest follow the same rule; patch 14 only at 224), DeiT and distilled DeiT,
    /// and a CIFAR preset.
    public static var presetNames: [String] {
        var names: [String] = []
        for size in ["tiny", "small", "base", "large", "huge"] {
            for patch in [8, 14, 16, 32] {
                // 384 is not a multiple of 14: patch-14 models exist at 224 only.
                for resolution in [224, 384] where resolution % patch == 0 { names.append("vit_\(size)_patch\(patch)_\(resolution)") }
            }
        }
        for size in ["tiny", "small", "base"] {
            names += ["deit_\(size)_patch16_224", "deit_\(size)_distilled_patch16_224"]
        }
        names += ["deit_base_patch16_384", "deit_base_distilled_patch16_384", "vit_cifar_patch4_32"]
        return names
    }

    /// The architecture of a preset, with timm's preprocessing defaults for it.
    public static func preset(_ name: String) throws -> ViTConfig {
        if name == "vit_cifar_patch4_32" { return cifar }
        let parts = name.split(separator: "_").map(String.init)
        // vit_<size>_patch<P>_<res> | deit_<size>[_distilled]_patch16_<res>
        guard parts.count >= 4, parts[0] == "vit" || parts[0] == "deit",
            let size = sizes[parts[1]],
            let patchPart = parts.first(where: { $0.hasPrefix("patch") }), let patch = Int(patchPart.dropFirst(5)),
            let resolution = Int(parts.last!)
        else {
            throw ConfigError("unknown preset \(name); known presets: \(presetNames.joined(separator: ", "))")
        }
        let distilled = parts.contains("distilled")
        guard parts.count == (distilled ? 5 : 4), parts[0] == "deit" || !distilled else {
            throw ConfigError("unknown preset \(name); known presets: \(presetNames.joined(separator: ", "))")
        }
        var config = ViTConfig()
        (config.width, config.depth, config.heads) = size
        config.patchSize = patch
        config.imageSize = resolution
        config.distillationToken = distilled
        config.data.inputSize = [3, resolution, resolution]
        if parts[0] == "deit" {
            config.data.mean = DataConfig.imagenetMean
            config.data.std = DataConfig.imagenetStd
            config.data.cropPct = resolution == 224 ? 0.875 : 1.0
        } else {
            config.data.cropPct = resolution == 224 ? 0.9 : 1.0
        }
        try config.validate()
        return config
    }

    /// A ViT for 32x32 images: patch 4 (64 patches), width 192, depth 9, 3 heads, MLP 384, 10 classes.
    public static var cifar: ViTConfig {
        var config = ViTConfig()
        config.imageSize = 32
        config.patchSize = 4
        config.width = 192
        config.depth = 9
        config.heads = 3
        config.mlpRatio = 2
        config.numClasses = 10
        config.data.inputSize = [3, 32, 32]
        config.data.mean = [0.4914, 0.4822, 0.4465]
        config.data.std = [0.2470, 0.2435, 0.2616]
        config.data.cropPct = 1
        return config
    }
}
