import Foundation
import NN
import Tensors

/// The Image Transformer's shape (Parmar et al. 2018; tensor2tensor's `imagetransformer_*` hparams with
/// `dec_attention_type = local_1d` and the "dan" post-processing of `imagetransformer_cifar10_base`).
public struct ImageTransformerConfig: Codable, Equatable, Sendable {
    /// Images of rows x columns x channels sub-pixels, each 0...255.
    public var imageSize = 32
    public var channels = 3
    /// t2t's hidden_size, num_decoder_layers, num_heads and filter_size.
    public var width = 512
    public var depth = 12
    public var heads = 4
    public var ffnWidth = 2048
    /// Local 1-D attention: each query block of this many sub-pixels sees itself (causally) and the block before.
    public var blockLength = 256
    /// Local 2-D attention instead (t2t's `dec_attention_type = local_2d`), on the image as rows x (columns x
    /// channels): query blocks of `queryShape` (rows, sub-pixel columns), each seeing itself in raster order and a
    /// memory flange of `memoryFlange` (rows above, sub-pixel columns each side); images are then generated in block
    /// raster order.
    public var local2D: Local2D?

    public struct Local2D: Codable, Equatable, Sendable {
        public var queryShape: [Int]
        public var memoryFlange: [Int]
        public init(queryShape: [Int] = [16, 16], memoryFlange: [Int] = [16, 32]) {
            (self.queryShape, self.memoryFlange) = (queryShape, memoryFlange)
        }
    }
    /// Class-conditional when above 0: a class embedding is added to every position.
    public var classCount = 0
    /// t2t's layer_prepostprocess_dropout (on the decoder input and every residual branch).
    public var dropout: Float = 0.3
    /// The class names of a conditional model, in label order.
    public var labels: [String]?

    public init() {}

    /// Sub-pixels per image: the sequence length.
    public var sequenceLength: Int { imageSize * imageSize * channels }

    /// The layout local 2-D attention works on: rows x (columns x channels).
    var grid: LocalAttention.Grid2D? {
        local2D.map {
            LocalAttention.Grid2D(
                rows: imageSize, columns: imageSize * channels, queryShape: ($0.queryShape[0], $0.queryShape[1]),
                memoryFlange: ($0.memoryFlange[0], $0.memoryFlange[1]))
        }
    }

    /// What cannot be built, as one line.
    public func validate() throws {
        var problems: [String] = []
        if !(1...1024).contains(imageSize) || !(1...4).contains(channels) {
            problems.append("images of \(imageSize) px and \(channels) channels (1...1024 px, 1...4 channels)")
        }
        // A configuration is read from a file: sizes are bounded before anything is allocated from them (the timing
        // table alone is L x width floats).
        if width > 65_536 || depth > 1024 || ffnWidth > 1 << 20 || blockLength > 1 << 20 || classCount > 1 << 20
            || Double(sequenceLength) * Double(max(width, 0)) > Double(1 << 28)
        {
            problems.append(
                "sizes past what is built: width \(width), depth \(depth), FFN \(ffnWidth), block \(blockLength), \(classCount) classes, \(sequenceLength) sub-pixels"
            )
        }
        if width < 8 || heads < 1 || width % heads != 0 {
            problems.append("width \(width) must be at least 8 and divisible by \(heads) heads")
        }
        if depth < 1 || ffnWidth < 1 || blockLength < 1 { problems.append("depth, FFN width and block length must be at least 1") }
        if classCount < 0 { problems.append("class count \(classCount) is negative") }
        if !(dropout >= 0 && dropout < 1) { problems.append("dropout \(dropout) outside [0, 1)") }
        if let labels, labels.count != classCount { problems.append("\(labels.count) class names for \(classCount) classes") }
        if let local2D {
            let (q, f) = (local2D.queryShape, local2D.memoryFlange)
            if q.count != 2 || f.count != 2 || q.contains(where: { $0 < 1 || $0 > 4096 }) || f.contains(where: { $0 < 0 || $0 > 4096 }) {
                problems.append("a 2-D query shape is two sizes of at least 1 and its flange two of at least 0, got \(q) and \(f)")
            }
        }
        if !problems.isEmpty { throw ImageTransformerError.badConfig(problems.joined(separator: "; ")) }
    }
}

public enum ImageTransformerError: Error, CustomStringConvertible {
    case badConfig(String)
    case badInput(String)

    public var description: String {
        switch self {
        case .badConfig(let why): return "Image Transformer configuration: \(why)"
        case .badInput(let why): return "Image Transformer input: \(why)"
        }
    }
}

/// Masked local self-attention over the sub-pixel sequence (t2t's `multihead_attention` with
/// `attention_type = "local_mask_right"`): projections without biases, queries scaled by (width / heads)^-1/2.
public final class LocalSelfAttention: Module {
    public let query: Linear
    public let key: Linear
    public let value: Linear
    public let output: Linear
    public let heads: Int
    public let blockLength: Int
    /// The 2-D layout (rows, sub-pixel columns) and shapes when the attention is local 2-D.
    let grid: LocalAttention.Grid2D?

    public init(width: Int, heads: Int, blockLength: Int, grid: LocalAttention.Grid2D? = nil) {
        (query, key, value, output) = (
            Linear(width, width, bias: false), Linear(width, width, bias: false), Linear(width, width, bias: false),
            Linear(width, width, bias: false)
        )
        (self.heads, self.blockLength, self.grid) = (heads, blockLength, grid)
        super.init()
    }

    /// x [B, L, d] -> [B, L, d].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, length, d) = (x.shape[0], x.shape[1], x.shape[2])
        let dk = d / heads
        func split(_ t: Tensor) -> Tensor { t.reshape([b, length, heads, dk]).permute([0, 2, 1, 3]) }  // [B, h, L, dk]
        let q = split(query(x)) * (1 / Float(dk).squareRoot())
        let attended =
            grid.map { LocalAttention.masked2D(q: q, k: split(key(x)), v: split(value(x)), grid: $0) }
            ?? LocalAttention.masked1D(q: q, k: split(key(x)), v: split(value(x)), blockLength: blockLength)
        return output(attended.permute([0, 2, 1, 3]).reshape([b, length, d]))
    }
}

/// t2t's `dense_relu_dense`: two linears with biases, a ReLU between.
public final class FeedForward: Module {
    public let fc1: Linear
    public let fc2: Linear

    public init(width: Int, hidden: Int) {
        (fc1, fc2) = (Linear(width, hidden), Linear(hidden, width))
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(fc1(x, activation: .relu)) }
}

/// One decoder layer, post-norm ("dan": dropout, add, norm) around attention and the feed-forward network.
public final class ImageTransformerLayer: Module {
    public let attention: LocalSelfAttention
    public let attentionNorm: LayerNorm
    public let ffn: FeedForward
    public let ffnNorm: LayerNorm
    let dropout: Dropout

    init(_ config: ImageTransformerConfig) {
        attention = LocalSelfAttention(width: config.width, heads: config.heads, blockLength: config.blockLength, grid: config.grid)
        attentionNorm = LayerNorm(config.width)
        ffn = FeedForward(width: config.width, hidden: config.ffnWidth)
        ffnNorm = LayerNorm(config.width)
        dropout = Dropout(config.dropout)
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = attentionNorm(x + dropout(attention(x)))
        return ffnNorm(h + dropout(ffn(h)))
    }
}

/// The Image Transformer: an image is the sequence of its sub-pixel intensities in raster order (row by row, the
/// channels of a pixel in turn), and each is a 256-way categorical predicted from all earlier ones.
///
/// The forward pass follows tensor2tensor's code (`Imagetransformer.body`):
/// 1. `get_channel_embeddings`: sub-pixel v of channel c looks up row v + 256 c of a [256 C, d] table, times sqrt(d);
/// 2. `prepare_decoder`: the sequence is shifted right by one (position k sees sub-pixels < k), then the 2-D timing
///    signal over (rows, columns x channels) is added (`add_timing_signal_nd`);
/// 3. a conditional model adds its class embedding (times sqrt(d)) everywhere; dropout;
/// 4. `depth` post-norm layers of masked local 1-D attention and a ReLU feed-forward network;
/// 5. `output_conv`: a linear to 256 logits per sub-pixel.
public final class ImageTransformer: Module {
    public let config: ImageTransformerConfig
    /// [256 · channels, d]: the intensities of channel c at rows 256c ..< 256(c+1).
    public let channelEmbedding: Tensor
    /// [classes, d] for a conditional model.
    public let classEmbedding: Tensor?
    public let layers: [ImageTransformerLayer]
    public let output: Linear
    let inputDropout: Dropout
    /// [1, L, d]: the timing signal, computed once.
    let timing: FixedTensor

    public init(_ config: ImageTransformerConfig) throws {
        try config.validate()
        self.config = config
        let d = config.width
        // Embeddings as t2t's symbol modalities draw them: normal with std d^-1/2 (the linears: timm's trunc-normal 0.02).
        channelEmbedding = Init.normal([256 * config.channels, d], std: 1 / Float(d).squareRoot())
        classEmbedding = config.classCount > 0 ? Init.normal([config.classCount, d], std: 1 / Float(d).squareRoot()) : nil
        layers = (0..<config.depth).map { _ in ImageTransformerLayer(config) }
        output = Linear(d, 256)
        inputDropout = Dropout(config.dropout)
        timing = FixedTensor(Self.timingSignal(rows: config.imageSize, columns: config.imageSize * config.channels, width: d))
        super.init()
        for p in [channelEmbedding, classEmbedding].compactMap({ $0 }) { p.requiresGrad = true }
    }

    /// t2t's `add_timing_signal_nd` for two positional axes, flattened: [1, rows · columns, width]. Each axis gets
    /// width / 4 timescales from 1 to 10^4 (sines then cosines), the first axis in the first half of the channels.
    public static func timingSignal(rows: Int, columns: Int, width: Int) -> Tensor {
        let timescales = width / 4
        let increment = log(1.0e4) / Double(max(timescales - 1, 1))
        var signal = [Float](repeating: 0, count: rows * columns * width)
        for r in 0..<rows {
            for c in 0..<columns {
                let base = (r * columns + c) * width
                for (axis, position) in [r, c].enumerated() {
                    for t in 0..<timescales {
                        let scaled = Double(position) * exp(Double(t) * -increment)
                        signal[base + axis * 2 * timescales + t] = Float(sin(scaled))
                        signal[base + axis * 2 * timescales + timescales + t] = Float(cos(scaled))
                    }
                }
            }
        }
        return Tensor(signal, shape: [1, rows * columns, width])
    }

    /// The logits of every sub-pixel given those before it: `subpixels` holds B images of rows x columns x channels
    /// values 0...255 in raster order (B · L of them), `labels` one class each for a conditional model.
    /// -> [B, L, 256].
    public func callAsFunction(_ subpixels: [UInt8], labels: [Int]? = nil) throws -> Tensor {
        let length = config.sequenceLength, d = config.width, channels = config.channels
        guard !subpixels.isEmpty, subpixels.count % length == 0 else {
            throw ImageTransformerError.badInput("\(subpixels.count) sub-pixels are not whole images of \(length)")
        }
        let b = subpixels.count / length
        if config.classCount > 0 {
            guard let labels, labels.count == b, labels.allSatisfy({ (0..<config.classCount).contains($0) }) else {
                throw ImageTransformerError.badInput("a conditional model needs one class in 0..<\(config.classCount) per image")
            }
        }
        let ids = subpixels.enumerated().map { Int($1) + 256 * ($0 % channels) }
        let scale = Float(d).squareRoot()
        let embedded = channelEmbedding.indexSelect(axis: 0, ids).reshape([b, length, d]) * scale  // [B, L, d]
        // shift_right_3d: position k sees the sub-pixels before k only (2-D: right_shift_blockwise, inside each block).
        var x =
            config.grid.map { Tensor.concat([embedded, Tensor.zeros([b, 1, d])], axis: 1).indexSelect(axis: 1, $0.shiftedSources) }
            ?? Tensor.concat([Tensor.zeros([b, 1, d]), embedded.slice(axis: 1, start: 0, length: length - 1)], axis: 1)
        x = x + timing.tensor
        if let classEmbedding, let labels { x = x + (classEmbedding.indexSelect(axis: 0, labels) * scale).reshape([b, 1, d]) }
        x = inputDropout(x)
        for layer in layers { x = layer(x) }
        return output(x)  // [B, L, 256]
    }

    /// The mean negative log-likelihood per sub-pixel in nats (cross-entropy of the logits against the sub-pixels);
    /// bits per dimension is this / ln 2.
    public func loss(_ subpixels: [UInt8], labels: [Int]? = nil) throws -> Tensor {
        let logits = try self(subpixels, labels: labels)
        return logits.reshape([-1, 256]).crossEntropy(targets: subpixels.map(Int.init))
    }

    /// The order sub-pixels are generated in: raster (local 1-D), or block raster (local 2-D: query blocks in raster
    /// order, raster inside each). Positions are raster indices.
    public var generationOrder: [Int] { config.grid?.blockRasterOrder ?? Array(0..<config.sequenceLength) }

    /// Nats per sub-pixel to bits per dimension.
    public static func bitsPerDimension(nats: Double) -> Double { nats / Foundation.log(2.0) }
}
