import CLIP
import NN
import Tensors

extension CLIPModel {
    /// CLIP's image tower as an ONNX graph: image [batch, 3, S, S] (normalised with CLIP's mean and std) ->
    /// embedding [batch, E] (projected, not normalised: open_clip's `encode_image`, `vit embed`'s), with open_clip's
    /// parameter names.
    func imageTowerONNXGraph() -> ONNXGraphBuilder {
        let c = config, tower = visual, d = c.visionWidth
        let graph = ONNXGraphBuilder(name: "clip_visual")
        graph.input("image", [nil, 3, c.imageSize, c.imageSize])
        let patches = graph.patches(
            "image", kernel: tower.conv1.weight, bias: nil, name: "visual.conv1", patchSize: c.patchSize, count: c.gridSize * c.gridSize)
        let classToken = graph.batchOf(
            graph.weight("visual.class_embedding", tower.classEmbedding, shape: [1, 1, d]), width: d, like: patches)
        var x = graph.op("Concat", [classToken, patches], ["axis": .int(1)])  // [B, 1 + N, D]
        x = graph.op("Add", [x, graph.weight("visual.positional_embedding", tower.positionalEmbedding)])
        x = graph.layerNorm(x, tower.lnPre, "visual.ln_pre")
        for (i, block) in tower.transformer.resblocks.enumerated() {
            let weights = ONNXGraphBuilder.BlockWeights(
                norm1: block.lnAttention, norm2: block.lnMLP, qkvWeight: block.attn.inProjWeight, qkvBias: block.attn.inProjBias,
                proj: block.attn.outProj, fc1: block.mlp.cFc, fc2: block.mlp.cProj, heads: c.visionHeads,
                scale: 1 / Float(c.visionHeadWidth).squareRoot(), activation: c.quickGELU ? .quickGELU : .geluErf,
                names: ("ln_1", "attn.in_proj", "attn.out_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"))
            x = graph.block(x, weights, prefix: "visual.transformer.resblocks.\(i)", tokens: 1 + c.gridSize * c.gridSize)
        }
        let pooled = graph.layerNorm(graph.token(x, 0), tower.lnPost, "visual.ln_post")  // [B, D]
        graph.op("MatMul", [pooled, graph.weight("visual.proj", tower.proj)], output: "embedding")
        graph.output("embedding", [nil, c.embedDim])
        return graph
    }
}
