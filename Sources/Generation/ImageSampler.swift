import Foundation
import NN
import Tensors

/// Draws images from an Image Transformer one sub-pixel at a time, in raster order, each from the model's 256-way
/// distribution (softmax of the logits / temperature) given everything drawn before it.
///
/// With `cached` (the default) each layer keeps the keys and values of the current attention window (the block
/// before and the block in progress), so sub-pixel p costs one pass over position p alone: the same numbers as the
/// full forward pass, whose logit p sees only positions < p. Without it, every sub-pixel runs the model over the
/// whole sequence again (what the cache saves, measured by `vit generate --no-cache`). A local 2-D model draws in
/// block raster order, without a cache (`usesCache`).
public struct ImageSampler {
    public let model: ImageTransformer
    public var temperature: Float = 1
    public var cached = true
    /// The matrix products' dtype (bf16 where the CPU has it), as `Autocast`.
    public var precision: DType = .float32

    public init(model: ImageTransformer) { self.model = model }

    /// Whether draws run on the cache: asked for, and the model's attention is local 1-D.
    public var usesCache: Bool { cached && model.config.local2D == nil }

    /// `count` images (count · L sub-pixels, raster order), conditioned on `label` for a class-conditional model;
    /// `logits`, when given, receives every drawn position's logits [count, L, 256] (tests compare them with a full pass).
    public func sample(
        count: Int, label: Int? = nil, seed: UInt64, logits recorded: UnsafeMutablePointer<Float>? = nil, progress: ((Int) -> Void)? = nil
    ) throws -> [UInt8] {
        let c = model.config
        if c.classCount > 0 {
            guard let label, (0..<c.classCount).contains(label) else {
                throw ImageTransformerError.badInput("a conditional model samples a class in 0..<\(c.classCount)")
            }
        } else if label != nil {
            throw ImageTransformerError.badInput("the model is not class-conditional")
        }
        guard count >= 1, temperature > 0, temperature.isFinite else {
            throw ImageTransformerError.badInput("sample at least one image at a positive temperature")
        }
        let wasTraining = model.training
        model.eval()
        defer { model.train(wasTraining) }
        var rng = SeededGenerator(seed: seed)
        let length = c.sequenceLength
        var drawn = [UInt8](repeating: 0, count: count * length)
        let labels = label.map { [Int](repeating: $0, count: count) }
        let state = usesCache ? DecodingState(model: model, count: count) : nil
        let order = model.generationOrder
        try Autograd.withNoGrad {
            for (t, p) in order.enumerated() {
                let logits: Tensor = try Autocast.run(precision) {
                    if let state {
                        return try state.step(
                            position: p, previous: p == 0 ? nil : (0..<count).map { drawn[$0 * length + p - 1] }, labels: labels)
                    }
                    // [count, L, 256] -> position p: [count, 256]
                    return try model(drawn, labels: labels).slice(axis: 1, start: p, length: 1)
                }
                let values = logits.cast(to: .float32).toArray()  // [count · 256]
                for n in 0..<count {
                    let row = values[(n * 256)..<((n + 1) * 256)]
                    if let recorded { for (k, v) in row.enumerated() { recorded[(n * length + p) * 256 + k] = v } }
                    drawn[n * length + p] = Self.draw(Array(row), temperature: temperature, using: &rng)
                }
                progress?(t + 1)
            }
        }
        return drawn
    }

    /// One draw from softmax(logits / temperature).
    static func draw(_ logits: [Float], temperature: Float, using rng: inout SeededGenerator) -> UInt8 {
        let scaled = logits.map { $0 / temperature }
        let top = scaled.max() ?? 0
        let weights = scaled.map { Foundation.exp(Double($0 - top)) }
        var target = Double(rng.nextFloat()) * weights.reduce(0, +)
        for (k, w) in weights.enumerated() {
            target -= w
            if target < 0 { return UInt8(k) }
        }
        return 255
    }
}

/// The keys and values of each layer's attention window while decoding: [N, h, 2·block, dk], the block before the
/// current one in the first half, the current block in the second (t2t's `masked_local_attention_1d` window).
final class DecodingState {
    let model: ImageTransformer
    let count: Int
    let block: Int
    let keys: [Tensor]
    let values: [Tensor]
    /// [1, L, d] as a flat array, to take one position's row.
    let timing: [Float]

    init(model: ImageTransformer, count: Int) {
        self.model = model
        self.count = count
        let c = model.config
        let length = c.sequenceLength
        let block = length < 2 * c.blockLength ? length : c.blockLength
        self.block = block
        let window = [count, c.heads, 2 * block, c.width / c.heads]
        keys = (0..<c.depth).map { _ in Tensor.zeros(window) }
        values = (0..<c.depth).map { _ in Tensor.zeros(window) }
        timing = model.timing.tensor.toArray()
    }

    /// The logits [N, 256] of position `position`, given the sub-pixel drawn at position − 1 (nil at 0).
    func step(position p: Int, previous: [UInt8]?, labels: [Int]?) throws -> Tensor {
        let c = model.config, d = c.width, heads = c.heads, dk = d / heads
        let slot = block + p % block
        if p > 0 && p % block == 0 {
            // A new block: the one just finished becomes the block before.
            for t in keys + values {
                let plane = 2 * block * dk
                for row in 0..<(count * heads) {
                    let base = t.pointer + row * plane
                    base.update(from: base + block * dk, count: block * dk)
                }
            }
        }
        let scale = Float(d).squareRoot()
        var x: Tensor  // [N, 1, d]
        if let previous {
            let channel = (p - 1) % c.channels
            x = model.channelEmbedding.indexSelect(axis: 0, previous.map { Int($0) + 256 * channel }).reshape([count, 1, d]) * scale
        } else {
            x = Tensor.zeros([count, 1, d])
        }
        x = x + Tensor(Array(timing[(p * d)..<((p + 1) * d)]), shape: [1, 1, d])
        if let classEmbedding = model.classEmbedding, let labels {
            x = x + (classEmbedding.indexSelect(axis: 0, labels) * scale).reshape([count, 1, d])
        }
        // Slots the query at `slot` may see: the block before (from the second block on) and its own block up to it.
        var bias = [Float](repeating: -1e9, count: 2 * block)
        for j in 0..<(2 * block) where j <= slot && (j >= block || p >= block) { bias[j] = 0 }
        let mask = Tensor(bias, shape: [1, 1, 1, 2 * block])
        for (l, layer) in model.layers.enumerated() {
            let a = layer.attention
            let q = (a.query(x) * (1 / Float(dk).squareRoot())).reshape([count, 1, heads, dk]).permute([0, 2, 1, 3])  // [N, h, 1, dk]
            // This position's key and value into the window: N · d numbers copied, once per layer and step.
            for (projection, window) in [(a.key(x), keys[l]), (a.value(x), values[l])] {
                let source = projection.cast(to: .float32).toArray()  // [N, 1, d]
                for n in 0..<count {
                    for head in 0..<heads {
                        let target = window.pointer + ((n * heads + head) * 2 * block + slot) * dk
                        source.withUnsafeBufferPointer { target.update(from: $0.baseAddress! + n * d + head * dk, count: dk) }
                    }
                }
            }
            let weights = (q.matmul(keys[l], transposeOther: true) + mask).softmax()  // [N, h, 1, 2·block]
            let attended = weights.matmul(values[l]).permute([0, 2, 1, 3]).reshape([count, 1, d])
            let h1 = layer.attentionNorm(x + a.output(attended))
            x = layer.ffnNorm(h1 + layer.ffn(h1))
        }
        return model.output(x).reshape([count, 256])
    }
}
