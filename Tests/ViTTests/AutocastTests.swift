import NN
import Tensors
import Testing
import ViT

/// Mixed precision (`Autocast`): bf16 matrix products under float32 weights. What must hold is what PyTorch's
/// autocast gives: float32 parameters get float32 gradients close to the float32 ones, the residual stream and the
/// logits stay float32, and every gradient has its tensor's dtype.
@Suite struct AutocastTests {
    @Test func elementwiseOpsPromoteAndGradientsKeepTheirTensorsDType() {
        let a = Tensor([1, 2, 3, 4], shape: [4], requiresGrad: true)
        let b = Tensor([0.5, 0.25, 2, 1], shape: [4]).converted(to: .bfloat16)
        b.requiresGrad = true
        let sum = a + b
        #expect(sum.dtype == .float32 && (b * a).dtype == .float32 && (b * b).dtype == .bfloat16)
        (sum * a).sum().backward()
        #expect(a.grad?.dtype == .float32 && b.grad?.dtype == .bfloat16)
        #expect(b.grad?.toArray() == [1, 2, 3, 4])
    }

    @Test func matrixProductsRunInBFloat16AndCastGradientsBack() {
        var rng = SeededGenerator(seed: 3)
        let x = Tensor.randn([5, 8], using: &rng), w = Tensor.randn([6, 8], using: &rng, requiresGrad: true)
        let bias = Tensor.randn([6], using: &rng, requiresGrad: true)
        let y = Autocast.run(.bfloat16) { x.linear(weight: w, bias: bias) }
        #expect(y.dtype == .bfloat16)
        #expect(Autocast.run(.float32) { x.linear(weight: w, bias: bias) }.dtype == .float32)
        #expect(Autocast.dtype == nil, "the scope ends with run")
        y.cast(to: .float32).sum().backward()
        #expect(w.grad?.dtype == .float32 && bias.grad?.dtype == .float32)
        // d(sum)/dw = column sums of x for every row; bf16 rounding only.
        let expected = (0..<8).map { j in (0..<5).map { x.toArray()[$0 * 8 + j] }.reduce(0, +) }
        for row in 0..<6 {
            for j in 0..<8 { #expect(abs(w.grad!.toArray()[row * 8 + j] - expected[j]) < 2e-2 * max(1, abs(expected[j]))) }
        }
        #expect(bias.grad!.toArray().allSatisfy { abs($0 - 5) < 1e-6 })
    }

    /// A whole ViT step (with drop path on) in both precisions from the same weights: the loss within 2e-2, every
    /// parameter's gradient float32 and within 5% (relative L2) of float32's.
    @Test func vitGradientsUnderAutocastTrackFloat32() throws {
        var config = ViTConfig()
        config.imageSize = 16
        config.patchSize = 4
        config.width = 64
        config.depth = 2
        config.heads = 4
        config.numClasses = 5
        let model = try GlobalRandom.using(RandomStream(SeededGenerator(seed: 7))) { try VisionTransformer(config) }
        for (_, p) in model.namedParameters() where p.rank >= 2 && p.toArray().allSatisfy({ $0 == 0 }) {
            var rng = SeededGenerator(seed: 11)
            p.assign(Tensor.randn(p.shape, std: 0.02, using: &rng))  // a non-zero head, so every gradient is non-zero
        }
        var rng = SeededGenerator(seed: 8)
        let images = Tensor.randn([4, 3, 16, 16], using: &rng)
        let labels = [0, 1, 2, 3]
        func gradients(_ dtype: DType) -> (loss: Float, grads: [String: [Float]]) {
            for p in model.parameters() { p.grad = nil }
            let logits = Autocast.run(dtype) { model(images) }
            #expect(logits.dtype == .float32)
            let loss = logits.crossEntropy(targets: labels)
            loss.backward()
            var grads: [String: [Float]] = [:]
            for (name, p) in model.namedParameters() {
                #expect(p.dtype == .float32 && p.grad?.dtype == .float32, "\(name)")
                grads[name] = p.grad?.toArray()
            }
            return (loss.item(), grads)
        }
        let exact = gradients(.float32), mixed = gradients(.bfloat16)
        #expect(abs(exact.loss - mixed.loss) < 2e-2 && exact.loss != mixed.loss, "bf16 rounding shows, but only that")
        for (name, reference) in exact.grads {
            let approximate = mixed.grads[name]!
            let error = zip(reference, approximate).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
            let norm = reference.map { $0 * $0 }.reduce(0, +).squareRoot()
            #expect(error <= 0.05 * norm + 1e-6, "\(name): relative error \(error / norm)")
        }
    }
}
