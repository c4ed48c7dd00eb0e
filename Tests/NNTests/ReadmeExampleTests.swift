import NN
import Tensors
import Testing

/// The README's Swift example, kept compiling and behaving as described.
@Suite struct ReadmeExampleTests {
    @Test func readmeExampleRuns() {
        GlobalRandom.seed(0)  // initialisers and dropout draw from it
        var rng = SeededGenerator(seed: 1)
        let block = Block(dim: 192, heads: 3)  // pre-norm ViT encoder block, timm names
        let head = Linear(192, 10)
        let x = Tensor.randn([8, 65, 192], using: &rng)  // [B, N, D]
        let (y, attention) = block(x, returnAttention: true)  // y [8, 65, 192], attention [8, 3, 65, 65]
        let logits = head(y.slice(axis: 1, start: 0, length: 1).squeeze(1))  // first token -> [8, 10]
        let loss = logits.crossEntropy(targets: [0, 1, 2, 3, 4, 5, 6, 7], labelSmoothing: 0.1)
        loss.backward()  // block.attn.qkv.weight.grad, head.bias.grad, ...

        let groups = ParameterGroup.standard(block, weightDecay: 0.05) + ParameterGroup.standard(head, weightDecay: 0.05)
        let optimizer = AdamW(groups, learningRate: 1e-3)
        let before = block.attn.qkv.weight.toArray()
        optimizer.step()
        optimizer.zeroGrad()

        let probabilities = Autograd.withNoGrad { head(block(x).output).softmax() }  // nothing recorded

        #expect(y.shape == [8, 65, 192] && attention?.shape == [8, 3, 65, 65] && logits.shape == [8, 10])
        #expect(block.attn.qkv.weight.toArray() != before && block.attn.qkv.weight.grad == nil)
        #expect(probabilities.shape == [8, 65, 10] && !probabilities.requiresGrad)
    }
}
