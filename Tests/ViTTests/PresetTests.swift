import Foundation
import NN
import Tensors
import Testing
@testable import ViT

/// One generic test over every preset, each shrunk to a tiny size: forward, backward, intermediate shapes.
@Suite struct PresetTests {
    @Test(arguments: ViTConfig.presetNames)
    func presetRunsForwardAndBackward(name: String) throws {
        var config = try ViTConfig.preset(name)
        // Same structure (tokens, heads, patch size, pooling), tiny numbers: 2x2 patches, 2 blocks, 4 dims a head.
        config.imageSize = 2 * config.patchSize
        config.width = config.heads * 4
        config.depth = 2
        config.numClasses = 5
        GlobalRandom.seed(1)
        let model = try VisionTransformer(config)
        var rng = SeededGenerator(seed: 2)
        let images = Tensor.randn([2, 3, config.imageSize, config.imageSize], using: &rng)
        let outputs = model.forward(images, collectBlockOutputs: true, collectAttentions: true)
        let tokens = 4 + config.prefixTokens
        #expect(outputs.logits.shape == [2, 5])
        #expect(outputs.preLogits.shape == [2, config.width])
        #expect(outputs.blockOutputs.map(\.shape) == [[2, tokens, config.width], [2, tokens, config.width]])
        #expect(outputs.attentions.map(\.shape) == [[2, config.heads, tokens, tokens], [2, config.heads, tokens, tokens]])
        outputs.logits.crossEntropy(targets: [1, 3]).backward()
        for (parameterName, parameter) in model.namedParameters() {
            #expect(parameter.grad?.shape == parameter.shape, "\(name): no gradient for \(parameterName)")
        }
        #expect(model.namedParameters().contains { $0.name == "head_dist.weight" } == config.distillationToken)
    }

    @Test func presetsMatchTimmSizes() throws {
        // Parameter counts of timm's models with 1000 classes.
        let expected = [
            "vit_tiny_patch16_224": 5_717_416, "vit_small_patch16_224": 22_050_664,
            "vit_base_patch16_224": 86_567_656, "vit_large_patch16_224": 304_326_632,
            "deit_base_distilled_patch16_224": 87_338_192
        ]
        for (name, count) in expected {
            GlobalRandom.seed(0)
            let config = try ViTConfig.preset(name)
            // Count without allocating the large ones: width, depth and the head decide it.
            // Per block: two norms (4d), qkv (3d² + 3d), proj (d² + d), fc1 (dm + m), fc2 (md + d).
            let d = config.width, m = config.mlpHiddenSize
            let blocks = config.depth * (4 * d * d + 2 * d * m + 9 * d + m)
            let embed = d * 3 * config.patchSize * config.patchSize + d
            let tokens = config.prefixTokens * d + config.tokenCount * d
            let heads = (config.distillationToken ? 2 : 1) * (d * 1000 + 1000)
            #expect(embed + tokens + blocks + 2 * d + heads == count, "\(name)")
        }
        let tiny = try VisionTransformer(try ViTConfig.preset("vit_tiny_patch16_224"))
        #expect(tiny.parameterCount == 5_717_416)
    }

    @Test func unknownPresetIsAClearError() {
        #expect { try ViTConfig.preset("vit_gigantic_patch16_224") } throws: { "\($0)".contains("unknown preset vit_gigantic_patch16_224") }
    }
}
