import Foundation
import NN
import Tensors
import TestSupport
import Testing

/// The README's Swift example ("Using the engine from Swift"), compiled and run here; the README is checked to show
/// exactly these lines, so the two cannot drift apart.
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

    /// Every line of the README's example (imports aside; the spacing before a comment may differ) stands in
    /// `readmeExampleRuns`, in the same order.
    @Test func readmeShowsTheCompiledExample() throws {
        let file = URL(fileURLWithPath: #filePath)
        let readme = try String(contentsOf: Fixtures.repository.appendingPathComponent("README.md"), encoding: .utf8)
        guard let section = readme.range(of: "## Using the engine from Swift"),
            let open = readme.range(of: "```swift\n", range: section.upperBound..<readme.endIndex),
            let close = readme.range(of: "\n```", range: open.upperBound..<readme.endIndex)
        else {
            Issue.record("README.md has no Swift example under \"Using the engine from Swift\"")
            return
        }
        func normalised(_ line: Substring) -> String { line.split(separator: " ").joined(separator: " ") }
        let shown = readme[open.upperBound..<close.lowerBound].split(separator: "\n").map(normalised)
            .filter { !$0.isEmpty && !$0.hasPrefix("import ") }
        let source = try String(contentsOf: file, encoding: .utf8)
        guard let start = source.range(of: "func readmeExampleRuns() {"),
            let end = source.range(of: "#expect(", range: start.upperBound..<source.endIndex)
        else {
            Issue.record("readmeExampleRuns not found in \(file.path)")
            return
        }
        var compiled = source[start.upperBound..<end.lowerBound].split(separator: "\n").map(normalised)[...]
        #expect(shown.count >= 10, "the README's example: \(shown)")
        for line in shown {
            guard let index = compiled.firstIndex(of: line) else {
                Issue.record("the README shows a line the test does not compile (or not in this order): \(line)")
                return
            }
            compiled = compiled[(index + 1)...]
        }
    }
}
