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
/// block raster order.
public struct ImageSampler {
    public let model: ImageTransformer
    public var temperature: Float = 1
    public var cached = true
    /// The matrix products' dtype (bf16 where the CPU has it), as `Autocast`.
    public var precision: DType = .float32

    public init(model: ImageTransformer) { self.model = model }

    /// Whether draws run on the cache (as asked).
    public var usesCache: Bool { cached }

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
        // The position whose sub-pixel each position's input embeds: the one before it (local 2-D: before it in its block).
        let sources =
            model.config.grid.map { grid in grid.shiftedSources.map { $0 == length ? nil : $0 } }
            ?? (0..<length).map { $0 == 0 ? nil : $0 - 1 }
        try Autograd.withNoGrad {
            for (t, p) in order.enumerated() {
                let logits: Tensor = try Autocast.run(precision) {
                    if let state {
                        let source = sources[p].map { s in (position: s, values: (0..<count).map { drawn[$0 * length + s] }) }
                        return try state.step(position: p, source: source, labels: labels)
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

/// The keys and values of each layer's attention window while decoding, [N, h, window, dk]. Local 1-D: the block
/// before the current one in the first half, the current block in the second (t2t's `masked_local_attention_1d`
/// window). Local 2-D: the current query block's memory flange (gathered once, when the block starts, from every
/// position's keys and values so far) followed by the block itself (t2t's `masked_local_attention_2d` memory).
final class DecodingState {
    let model: ImageTransformer
    let count: Int
    /// Local 1-D's block (local 2-D: nil, `grid` instead).
    let block: Int?
    let grid: LocalAttention.Grid2D?
    let window: Int
    let keys: [Tensor]
    let values: [Tensor]
    /// Local 2-D: every position's keys and values so far, [N, h, L + 1, dk] (row L stays zero: padding).
    let allKeys: [Tensor]
    let allValues: [Tensor]
    /// The local 2-D query block in progress.
    private var currentBlock = -1
    /// [1, L, d] as a flat array, to take one position's row.
    let timing: [Float]

    init(model: ImageTransformer, count: Int) {
        self.model = model
        self.count = count
        let c = model.config
        let length = c.sequenceLength, h = c.heads, dk = c.width / c.heads
        grid = c.grid
        if let grid {
            block = nil
            window = grid.memorySize
        } else {
            let block = length < 2 * c.blockLength ? length : c.blockLength
            self.block = block
            window = 2 * block
        }
        let shape = [count, h, window, dk]
        keys = (0..<c.depth).map { _ in Tensor.zeros(shape) }
        values = (0..<c.depth).map { _ in Tensor.zeros(shape) }
        let everything = grid == nil ? [] : [count, h, length + 1, dk]
        allKeys = everything.isEmpty ? [] : (0..<c.depth).map { _ in Tensor.zeros(everything) }
        allValues = everything.isEmpty ? [] : (0..<c.depth).map { _ in Tensor.zeros(everything) }
        timing = model.timing.tensor.toArray()
    }

    /// Moves the windows to position p and returns its slot in them and the mask row over the window.
    private func prepare(position p: Int) -> (slot: Int, bias: [Float]) {
        let c = model.config, heads = c.heads, dk = c.width / c.heads
        if let block {
            let slot = block + p % block
            if p > 0 && p % block == 0 {
                // A new block: the one just finished becomes the block before.
                for t in keys + values {
                    for row in 0..<(count * heads) {
                        let base = t.pointer + row * window * dk
                        base.update(from: base + block * dk, count: block * dk)
                    }
                }
            }
            // The block before (from the second block on) and its own block up to the query.
            var bias = [Float](repeating: -1e9, count: window)
            for j in 0..<window where j <= slot && (j >= block || p >= block) { bias[j] = 0 }
            return (slot, bias)
        }
        let grid = self.grid!
        let q = grid.blockSize, flange = window - q
        let place = grid.placeOfPosition[p]
        let (n, i) = (place / q, place % q)
        if n != currentBlock {
            // A new query block: its flange from every position's keys and values (zeros outside the image), its
            // own slots empty.
            currentBlock = n
            let length = c.sequenceLength
            for (windowTensors, all) in [(keys, allKeys), (values, allValues)] {
                for (w, a) in zip(windowTensors, all) {
                    for row in 0..<(count * heads) {
                        let target = w.pointer + row * window * dk, source = a.pointer + row * (length + 1) * dk
                        for j in 0..<flange { (target + j * dk).update(from: source + grid.memory[n * window + j] * dk, count: dk) }
                        (target + flange * dk).update(repeating: 0, count: q * dk)
                    }
                }
            }
        }
        var bias = [Float](repeating: 0, count: window)
        for j in 0..<flange where grid.flangeOutside[n][j] { bias[j] = -1e9 }
        for j in 0..<q where j > i { bias[flange + j] = -1e9 }
        return (flange + i, bias)
    }

    /// The logits [N, 256] of position `position`, given the sub-pixels its input embeds: those at `source` (the
    /// position before it, or before it in its block), nil for none (zeros).
    func step(position p: Int, source: (position: Int, values: [UInt8])?, labels: [Int]?) throws -> Tensor {
        let c = model.config, d = c.width, heads = c.heads, dk = d / heads, length = c.sequenceLength
        let (slot, bias) = prepare(position: p)
        let scale = Float(d).squareRoot()
        var x: Tensor  // [N, 1, d]
        if let source {
            let channel = source.position % c.channels
            x = model.channelEmbedding.indexSelect(axis: 0, source.values.map { Int($0) + 256 * channel }).reshape([count, 1, d]) * scale
        } else {
            x = Tensor.zeros([count, 1, d])
        }
        x = x + Tensor(Array(timing[(p * d)..<((p + 1) * d)]), shape: [1, 1, d])
        if let classEmbedding = model.classEmbedding, let labels {
            x = x + (classEmbedding.indexSelect(axis: 0, labels) * scale).reshape([count, 1, d])
        }
        let mask = Tensor(bias, shape: [1, 1, 1, window])
        for (l, layer) in model.layers.enumerated() {
            let a = layer.attention
            let q = (a.query(x) * (1 / Float(dk).squareRoot())).reshape([count, 1, heads, dk]).permute([0, 2, 1, 3])  // [N, h, 1, dk]
            // This position's key and value into the window (and, local 2-D, among every position's): N · d numbers
            // copied, once per layer and step.
            for (projection, windowTensor, all) in [
                (a.key(x), keys[l], allKeys.isEmpty ? nil : allKeys[l]), (a.value(x), values[l], allValues.isEmpty ? nil : allValues[l])
            ] {
                let computed = projection.cast(to: .float32).toArray()  // [N, 1, d]
                computed.withUnsafeBufferPointer { from in
                    for n in 0..<count {
                        for head in 0..<heads {
                            let row = from.baseAddress! + n * d + head * dk
                            (windowTensor.pointer + ((n * heads + head) * window + slot) * dk).update(from: row, count: dk)
                            if let all { (all.pointer + ((n * heads + head) * (length + 1) + p) * dk).update(from: row, count: dk) }
                        }
                    }
                }
            }
            let weights = (q.matmul(keys[l], transposeOther: true) + mask).softmax()  // [N, h, 1, window]
            let attended = weights.matmul(values[l]).permute([0, 2, 1, 3]).reshape([count, 1, d])
            let h1 = layer.attentionNorm(x + a.output(attended))
            x = layer.ffnNorm(h1 + layer.ffn(h1))
        }
        return model.output(x).reshape([count, 256])
    }
}
