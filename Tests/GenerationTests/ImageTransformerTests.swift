import Checkpoints
import Foundation
import NN
import Tensors
import TestSupport
import Testing

@testable import Generation

/// The Image Transformer against the PyTorch reference written from tensor2tensor's code
/// (`scripts/reference/image_transformer.py`, fixtures in `Fixtures/`): logits, loss and every gradient; and the
/// masks: no logit depends on its own sub-pixel or a later one.
@Suite struct ImageTransformerTests {
    static let fixtures = ["image-transformer-rgb-4x4-b8-cond", "image-transformer-grey-5x5-b8"]
    static let fixtures2D = ["image-transformer-2d-rgb-6x6-q2x4-f2x3", "image-transformer-2d-grey-5x5-q2x2-f1x2-cond"]

    /// The fixture's model (its weights loaded, dropout off), sub-pixels, labels and reference numbers.
    static func load(_ name: String) throws -> (ImageTransformer, [UInt8], [Int]?, SafetensorsFile, [String: Any]) {
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.url("GenerationTests", "\(name).json"))) as! [String: Any]
        let file = try SafetensorsFile(contentsOf: Fixtures.url("GenerationTests", "\(name).safetensors"))
        var config = ImageTransformerConfig()
        config.imageSize = json["rows"] as! Int
        config.channels = json["channels"] as! Int
        config.width = json["width"] as! Int
        config.depth = json["depth"] as! Int
        config.heads = json["heads"] as! Int
        config.ffnWidth = json["ffn"] as! Int
        config.blockLength = json["block_length"] as! Int
        config.classCount = json["classes"] as! Int
        if let query = json["query_shape"] as? [Int], let flange = json["memory_flange"] as? [Int] {
            config.local2D = .init(queryShape: query, memoryFlange: flange)
        }
        config.dropout = 0
        let model = try ImageTransformer(config)
        var weights: [String: Tensor] = [:]
        for (name, _) in model.namedParameters() { weights[name] = try file.tensor(name) }
        try model.load(stateDict: weights)
        let images = try file.integers("images").map { UInt8($0) }
        let labels = config.classCount > 0 ? try file.integers("labels") : nil
        return (model, images, labels, file, json)
    }

    @Test(arguments: fixtures + fixtures2D)
    func logitsLossAndGradientsMatchTheReference(name: String) throws {
        let (model, images, labels, file, json) = try Self.load(name)
        let logits = try model(images, labels: labels)
        expectClose(logits.toArray(), try file.tensor("logits").toArray(), tolerance: 1e-4)
        let loss = logits.reshape([-1, 256]).crossEntropy(targets: images.map(Int.init))
        #expect(abs(Double(loss.item()) - (json["loss_nats"] as! Double)) < 1e-4)
        loss.backward()
        for (parameterName, parameter) in model.namedParameters() {
            let expected = try file.tensor("grad." + parameterName).toArray()
            let actual = try #require(parameter.grad, "\(parameterName) has no gradient").toArray()
            let worst = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
            #expect(worst < 1e-4, "\(parameterName): gradients differ by \(worst)")
        }
        #expect(abs(ImageTransformer.bitsPerDimension(nats: Double(loss.item())) - (json["bits_per_dim"] as! Double)) < 1e-4)
    }

    /// Changing sub-pixel k changes no logit at positions ≤ k (what predicts k never sees it), and does change the
    /// next one; across block boundaries and in the first block.
    @Test func noLogitSeesItsOwnSubpixelOrALaterOne() throws {
        let (model, images, labels, _, _) = try Self.load(Self.fixtures[0])
        let length = model.config.sequenceLength
        let first = Array(images.prefix(length)), label = labels.map { [$0[0]] }
        let base = try model(first, labels: label).toArray()
        for k in [0, 5, 7, 8, 15, 16, 30, 47] {
            var changed = first
            changed[k] = changed[k] &+ 128
            let out = try model(changed, labels: label).toArray()
            let unchangedUpTo = (k + 1) * 256
            let earlierUnchanged = Array(out.prefix(unchangedUpTo)) == Array(base.prefix(unchangedUpTo))
            #expect(earlierUnchanged, "changing sub-pixel \(k) moved a logit at or before it")
            if k + 1 < length {
                let next = (k + 1) * 256..<(k + 2) * 256
                let nextChanged = Array(out[next]) != Array(base[next])
                #expect(nextChanged, "position \(k + 1) does not see sub-pixel \(k)")
            }
        }
    }

    /// Local 2-D: changing a sub-pixel changes no logit at or before it in block raster order (the order a 2-D model
    /// generates in), and changes some later one unless it is the last of its block.
    @Test(arguments: fixtures2D)
    func noLogitSeesItsOwnSubpixelOrALaterOneInBlockRasterOrder(name: String) throws {
        let (model, images, labels, _, _) = try Self.load(name)
        let length = model.config.sequenceLength
        let first = Array(images.prefix(length)), label = labels.map { [$0[0]] }
        let base = try model(first, labels: label).toArray()
        let order = model.generationOrder
        #expect(order.count == length && Set(order).count == length)
        var rank = [Int](repeating: 0, count: length)
        for (i, p) in order.enumerated() { rank[p] = i }
        for k in [0, 1, 4, 7, length / 2, length - 2] {
            var changed = first
            changed[k] = changed[k] &+ 128
            let out = try model(changed, labels: label).toArray()
            let moved = (0..<length).filter { Array(out[($0 * 256)..<(($0 + 1) * 256)]) != Array(base[($0 * 256)..<(($0 + 1) * 256)]) }
            #expect(
                moved.allSatisfy { rank[$0] > rank[k] }, "changing \(k) (rank \(rank[k])) moved \(moved.filter { rank[$0] <= rank[k] })")
            // t2t's right_shift_blockwise feeds each sub-pixel to the next position of its block only: the last of a
            // block (or one before padding) is never an input, so changing it moves nothing, in t2t as here.
            let isInput = try #require(model.config.grid).shiftedSources.contains(k)
            #expect(moved.isEmpty != isInput, "changing \(k) (rank \(rank[k]) of \(length), an input: \(isInput)) moved \(moved.count)")
        }
    }

    /// The blocked attention equals dense attention under its band mask: j ≤ p and j ≥ (p / block − 1) · block, for
    /// lengths that fill whole blocks, that need padding, and shorter than two blocks (one block).
    @Test(arguments: [(48, 8), (27, 8), (10, 8)])
    func localAttentionIsDenseAttentionUnderItsBand(length: Int, block: Int) {
        let q = random([2, 3, length, 4], seed: 1), k = random([2, 3, length, 4], seed: 2), v = random([2, 3, length, 4], seed: 3)
        let used = length < 2 * block ? length : block
        var mask = [Float](repeating: -1e9, count: length * length)
        for p in 0..<length {
            for j in 0...p where j >= (p / used - 1) * used { mask[p * length + j] = 0 }
        }
        let dense = (q.matmul(k, transposeOther: true) + Tensor(mask, shape: [length, length])).softmax().matmul(v)
        expectClose(LocalAttention.masked1D(q: q, k: k, v: v, blockLength: block).toArray(), dense.toArray(), tolerance: 1e-6)
    }

    @Test func badInputIsOneLine() throws {
        let (model, _, _, _, _) = try Self.load(Self.fixtures[0])
        #expect(throws: ImageTransformerError.self) { _ = try model([1, 2, 3], labels: [0]) }
        #expect(throws: ImageTransformerError.self) { _ = try model([UInt8](repeating: 0, count: 48), labels: [3]) }
        #expect(throws: ImageTransformerError.self) { _ = try model([UInt8](repeating: 0, count: 48), labels: nil) }
        var config = ImageTransformerConfig()
        config.width = 30
        config.heads = 4
        #expect(throws: ImageTransformerError.self) { _ = try ImageTransformer(config) }
    }
}

/// Sampling with cached keys and values gives the logits of a full pass over what it drew, and the same images as
/// sampling without the cache.
@Suite struct ImageSamplerTests {
    @Test(arguments: ImageTransformerTests.fixtures + ImageTransformerTests.fixtures2D)
    func cachedDecodingGivesTheFullPassLogits(name: String) throws {
        let (model, _, labels, _, _) = try ImageTransformerTests.load(name)
        let length = model.config.sequenceLength, count = 2
        let label = labels.map { $0[0] }
        var recorded = [Float](repeating: 0, count: count * length * 256)
        var sampler = ImageSampler(model: model)
        let drawn = try recorded.withUnsafeMutableBufferPointer {
            try sampler.sample(count: count, label: label, seed: 7, logits: $0.baseAddress)
        }
        let full = try model(drawn, labels: label.map { [Int](repeating: $0, count: count) }).toArray()
        expectClose(recorded, full, tolerance: 1e-4)
        sampler.cached = false
        #expect(try sampler.sample(count: count, label: label, seed: 7) == drawn)
        // Another seed draws other images; a temperature near 0 draws the most likely sub-pixel each time.
        #expect(try ImageSampler(model: model).sample(count: count, label: label, seed: 8) != drawn)
        var greedy = ImageSampler(model: model)
        greedy.temperature = 1e-4
        let argmax = try greedy.sample(count: 1, label: label, seed: 1)
        let logits = try model(argmax, labels: label.map { [$0] }).toArray()
        for p in 0..<length {
            let row = Array(logits[(p * 256)..<((p + 1) * 256)])
            #expect(Int(argmax[p]) == row.firstIndex(of: row.max()!)!, "position \(p) is not the most likely sub-pixel")
        }
    }
}

@Suite struct IndependentCategoricalTests {
    /// Uniform data costs 8 bits; data that repeats one image costs almost nothing at each position; an unseen value
    /// costs log2(images + 256) bits (add-one smoothing).
    @Test func bitsPerDimensionOfKnownCases() {
        var uniform = IndependentCategorical(length: 2)
        uniform.fit((0..<512).map { UInt8($0 / 2) })  // 256 images [v, v]: every value once at each position
        #expect(abs(uniform.bitsPerDimension([7, 200]) - 8) < 1e-9)
        var constant = IndependentCategorical(length: 3)
        constant.fit([UInt8](repeating: 9, count: 3 * 1000))
        #expect(constant.bitsPerDimension([9, 9, 9]) < 0.4)
        #expect(abs(constant.bitsPerDimension([8, 8, 8]) - log2(1256.0)) < 1e-9)
    }
}

/// An Image Transformer folder: the fixture's weights beside a config.json load as the fixture's model; hostile
/// configurations are one error, before anything is allocated from them.
@Suite struct ImageTransformerCheckpointTests {
    @Test func aFolderLoadsAndHostileConfigurationsAreRefused() throws {
        let folder = try temporaryFolder("swiftvit-it-folder")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(
            at: Fixtures.url("GenerationTests", "image-transformer-grey-5x5-b8.safetensors"),
            to: folder.appendingPathComponent("model.safetensors"))
        let config = folder.appendingPathComponent("config.json")
        try FileManager.default.copyItem(at: Fixtures.url("GenerationTests", "image-transformer-grey-5x5-b8-config.json"), to: config)
        #expect(ImageTransformerCheckpoint.holdsModel(folder))
        let model = try ImageTransformerCheckpoint.load(folder)
        let file = try SafetensorsFile(contentsOf: Fixtures.url("GenerationTests", "image-transformer-grey-5x5-b8.safetensors"))
        let images = try file.integers("images").map { UInt8($0) }
        expectClose(try model(images).toArray(), try file.tensor("logits").toArray(), tolerance: 1e-4)
        let original = try String(contentsOf: config, encoding: .utf8)
        for (field, value) in [("imageSize", "100000"), ("width", "1000000"), ("heads", "3"), ("depth", "-1"), ("blockLength", "0")] {
            let hostile = original.replacingOccurrences(
                of: "\"\(field)\" : \\d+", with: "\"\(field)\" : \(value)", options: .regularExpression)
            try hostile.write(to: config, atomically: true, encoding: .utf8)
            #expect(throws: FileError.self, "\(field) \(value)") { _ = try ImageTransformerCheckpoint.load(folder) }
        }
    }
}
