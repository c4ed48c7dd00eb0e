import NN
import Tensors
import ViT

extension VisionTransformer {
    /// This ViT or DeiT as an ONNX graph: image [batch, C, S, S] (normalised) -> logits [batch, classes] (a
    /// distilled DeiT's two heads averaged, as `vit predict`), or without a head the pooled features [batch, D].
    /// The same operations as `forward`, in timm's order, with the checkpoint's parameter names.
    func onnxGraph() throws -> ONNXGraphBuilder {
        guard patchEmbed.backbone == nil else {
            throw ExportError("ONNX export covers plain ViT/DeiT patch embeddings; this hybrid's ResNet stem is not exported yet")
        }
        let c = config, d = config.width
        let graph = ONNXGraphBuilder(name: "vit")
        graph.input("image", [nil, c.channels, c.imageSize, c.imageSize])
        var x = graph.patches(
            "image", kernel: patchEmbed.proj.weight, bias: patchEmbed.proj.bias, name: "patch_embed.proj", patchSize: c.patchSize,
            count: c.patchCount)  // [B, N, D]
        let positions = positionTable.map { graph.weight(posEmbed == nil ? "pos_embed_sincos" : "pos_embed", $0) }
        if c.noEmbedClass, let positions { x = graph.op("Add", [x, positions]) }
        let prefix = [(clsToken, "cls_token"), (distToken, "dist_token")].compactMap { token, name in
            token.map { graph.batchOf(graph.weight(name, $0), width: d, like: x) }
        }
        if !prefix.isEmpty { x = graph.op("Concat", prefix + [x], ["axis": .int(1)]) }  // [B, prefix + N, D]
        if !c.noEmbedClass, let positions { x = graph.op("Add", [x, positions]) }
        let tokens = c.patchCount + prefix.count
        for (i, block) in blocks.enumerated() {
            let activation: ONNXGraphBuilder.Activation
            switch block.mlp.activation {
            case .geluErf: activation = .geluErf
            case .geluTanh: activation = .geluTanh
            default: throw ExportError("block \(i): its MLP activation \(block.mlp.activation) has no ONNX form here")
            }
            let weights = ONNXGraphBuilder.BlockWeights(
                norm1: block.norm1, norm2: block.norm2, qkvWeight: block.attn.qkv.weight, qkvBias: block.attn.qkv.bias,
                proj: block.attn.proj, fc1: block.mlp.fc1, fc2: block.mlp.fc2, heads: block.attn.numHeads, scale: block.attn.scale,
                activation: activation, names: ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"))
            x = graph.block(x, weights, prefix: "blocks.\(i)", tokens: tokens)
        }
        if let norm { x = graph.layerNorm(x, norm, "norm") }  // [B, T, D]

        // The heads, as `heads(_:)`: pool, fc_norm, pre-logits, then the classifier(s).
        func pooled(_ index: Int?, withFCNorm: Bool = true) -> String {
            var pooled: String
            if let index {
                pooled = graph.token(x, index)
            } else {
                let patches = graph.op(
                    "Slice", [x, graph.int64s([c.prefixTokens]), graph.int64s([c.prefixTokens + c.patchCount]), graph.int64s([1])])
                pooled = graph.op("ReduceMean", [patches], ["axes": .ints([1]), "keepdims": .int(0)])
            }
            if withFCNorm, let fcNorm { pooled = graph.layerNorm(pooled, fcNorm, "fc_norm") }
            if let preLogits { pooled = graph.op("Tanh", [graph.gemm(pooled, preLogits.fc, "pre_logits.fc")]) }
            return pooled  // [B, F]
        }
        let features = pooled(c.pooling == .token ? 0 : nil)
        guard let head else {
            graph.op("Identity", [features], output: "features")
            graph.output("features", [nil, c.representationSize ?? d])
            return graph
        }
        var logits = graph.gemm(features, head, "head")
        if let headDist {
            // A distilled DeiT evaluates the mean of its class-token and distillation-token heads; the distillation
            // token goes through fc_norm only after average pooling, as `heads(_:)` says why.
            let distilled = graph.gemm(pooled(1, withFCNorm: c.pooling == .avg), headDist, "head_dist")
            logits = graph.op("Mul", [graph.op("Add", [logits, distilled]), graph.scalar(0.5)])
        }
        graph.op("Identity", [logits], output: "logits")
        graph.output("logits", [nil, c.numClasses])
        return graph
    }
}

public struct ExportError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
