import ArgumentParser
import Datasets
import Foundation
import Generation
import Images
import Tensors
import Training

extension Train {
    /// The options `train --task generation` reads; any other is refused, never ignored.
    static let generationOptions: Set<String> = [
        "--task", "--data", "--output", "-o", "--resume", "--epochs", "--batch-size", "--lr", "--warmup", "--seed", "--max-steps",
        "--precision", "--max-image-pixels", "--width", "--depth", "--heads", "--mlp-ratio", "--dropout", "--image-size", "--log-steps",
        "--block-length", "--query-shape", "--memory-flange", "--conditional", "--eval-images", "--data-reading", "--workers",
        "--shuffle-buffer", "--shuffle-initial",
        "--max-bad-fraction"
    ]

    /// A new Image Transformer run on --data (its training part; bits/dim on its test part after each epoch), or the
    /// run in `folder` continued.
    func generationTrainer(_ folder: URL) throws -> GenerationTrainer {
        let refused = ResumedRun.unusedOptions(used: Self.generationOptions)
        if !refused.isEmpty {
            throw CommandFailure("\(refused.joined(separator: ", ")) \(refused.count == 1 ? "does" : "do") not apply to --task generation")
        }
        let saved = runOptions.resume ? try GenerationTrainer.savedConfig(in: folder) : nil
        let size = saved?.imageSize ?? imageSize
        printError("reading \(data) ...")
        let parts = try dataReading.reading.load(data, parts: [.train, .test], sizing: size.map { .size($0) } ?? .native, needs: .label)
        guard let train = parts[.train]?.images else { throw CommandFailure("\(data) has no training images") }
        let test = parts[.test]?.images
        printError(
            "\(train.count) training images of \(train.width)x\(train.height), \(train.readingSummary)"
                + (test.map { "; \($0.count) test images" } ?? "; no test part (no test bits/dim)"))
        if let saved {
            return try GenerationTrainer.resume(
                folder: folder, data: train, test: test, epochs: runOptions.epochs, precision: runOptions.precision)
        }
        try runOptions.checkNewRun()
        var options = try runOptions.apply(to: GenerationOptions(), flags: ["evaluationImages": "--eval-images"])
        options.evaluationImages = evalImages
        try options.validate()
        guard train.width == train.height else {
            throw CommandFailure("generation needs square images, the data has \(train.width)x\(train.height): give --image-size")
        }
        var config = ImageTransformerConfig()
        config.imageSize = train.width
        // Grey images (IDX files, or folders whose pixels are all grey) are modelled as one channel.
        config.channels = try train.figureImages(64).allSatisfy(Self.isGrey) ? 1 : 3
        config.width = width ?? 128
        config.depth = depth ?? 4
        config.heads = heads ?? 4
        config.ffnWidth = Int((mlpRatio ?? 4) * Float(config.width))
        config.blockLength = blockLength ?? 256
        if let queryShape {
            if blockLength != nil { throw CommandFailure("--block-length is local 1-D attention's, --query-shape local 2-D's: give one") }
            config.local2D = .init(queryShape: queryShape.values, memoryFlange: memoryFlange?.values ?? [16, 32])
        } else if memoryFlange != nil {
            throw CommandFailure("--memory-flange goes with --query-shape (local 2-D attention)")
        }
        config.dropout = Self.given("--dropout") ? dropout : 0.3
        if conditional { (config.classCount, config.labels) = (train.classNames.count, train.classNames) }
        do { try config.validate() } catch { throw CommandFailure("\(error)") }
        GlobalRandom.seed(options.seed)
        let model = try ImageTransformer(config)
        printError(
            "Image Transformer: \(config.imageSize)x\(config.imageSize)x\(config.channels) = \(config.sequenceLength) sub-pixels, \(config.local2D.map { "local 2-D attention in blocks of \($0.queryShape[0])x\($0.queryShape[1]), flange \($0.memoryFlange[0])x\($0.memoryFlange[1])" } ?? "local 1-D attention in blocks of \(config.blockLength)"), width \(config.width), \(config.depth) layers, \(config.heads) heads, FFN \(config.ffnWidth), dropout \(config.dropout)\(config.classCount > 0 ? ", conditioned on \(config.classCount) classes" : ""); \(model.parameterCount) parameters"
        )
        return try GenerationTrainer(model: model, options: options, data: train, test: test, folder: folder)
    }

    /// Whether every pixel of `image` has R = G = B.
    static func isGrey(_ image: RGBImage) -> Bool {
        let p = image.pixels
        for i in stride(from: 0, to: p.count, by: 3) where p[i] != p[i + 1] || p[i] != p[i + 2] { return false }
        return true
    }
}
