import Datasets
import Foundation
import Generation
import Tensors
import TestSupport
import Testing
import Training

/// The Image Transformer under the run loop: it learns (bits/dim falls below the 8 of a uniform guess, on held-out
/// images) and a run stopped and resumed ends where one run straight does.
@Suite(.serialized) struct GenerationTrainerTests {
    static func tinyConfig(classes: Int = 0) -> ImageTransformerConfig {
        var config = ImageTransformerConfig()
        (config.imageSize, config.channels, config.width, config.depth, config.heads, config.ffnWidth) = (8, 3, 32, 1, 2, 64)
        (config.blockLength, config.dropout, config.classCount) = (64, 0.1, classes)
        return config
    }

    static func options(epochs: Int) -> GenerationOptions {
        var options = GenerationOptions()
        (options.epochs, options.batchSize, options.learningRate, options.warmupEpochs) = (epochs, 16, 3e-3, 0.5)
        return options
    }

    @Test func bitsPerDimensionFallAndAResumedRunEndsAsOneRunStraight() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = quadrantDataset(count: 64, seed: 3), test = quadrantDataset(count: 32, seed: 4)
        func model() throws -> ImageTransformer {
            try GlobalRandom.using(RandomStream(SeededGenerator(seed: 5))) { try ImageTransformer(Self.tinyConfig(classes: 4)) }
        }
        let once = try GenerationTrainer(
            model: try model(), options: Self.options(epochs: 2), data: data, test: test, folder: folder.appendingPathComponent("once"))
        #expect(try once.run() == .finished)
        let history = once.state.history
        // Eight steps: already below the 8 bits a uniform guess costs, on images it never saw, and falling.
        let testBits = history.map { $0.testBitsPerDim ?? 9 }
        #expect(testBits[1] < testBits[0] && testBits[1] < 7.8, "test bits/dim \(testBits)")
        #expect(history[1].trainBitsPerDim < history[0].trainBitsPerDim, "\(history.map(\.trainBitsPerDim))")

        let split = folder.appendingPathComponent("split")
        let first = try GenerationTrainer(model: try model(), options: Self.options(epochs: 2), data: data, test: test, folder: split)
        first.stepLimit = 3
        #expect(try first.run() == .stopped)
        let resumed = try GenerationTrainer.resume(folder: split, data: data, test: test)
        #expect(try resumed.run() == .finished)
        let differing = zip(once.model.namedParameters(), resumed.model.namedParameters())
            .filter { $0.tensor.toArray() != $1.tensor.toArray() }.map(\.0.name)
        #expect(differing.isEmpty, "weights differ: \(differing)")
        #expect(once.state.history.map(\.trainBitsPerDim) == resumed.state.history.map(\.trainBitsPerDim))

        // The saved folder loads back as the same model.
        let loaded = try ImageTransformerCheckpoint.load(folder.appendingPathComponent("once"))
        let bits = try GenerationTrainer.bitsPerDimension(loaded, on: test)
        #expect(abs(bits - history[1].testBitsPerDim!) < 1e-9, "\(bits) vs \(history[1].testBitsPerDim!)")
    }
}
