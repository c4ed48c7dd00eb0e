import ArgumentParser
import Datasets
import Foundation
import Training

/// How fast streamed training data is decoded: what `vit train` reads its batches with, without a model.
struct DataBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract:
            "Images per second that --workers decoding threads deliver from streamed --data (WebDataset shards or an image folder), as vit train reads it: decoded, resized, augmented with vit train's default recipe (padded crop, flip) and normalised."
    )

    @Option(help: "Training data, as vit train takes it.") var data: String
    @Option(help: "Images are resized to this size.") var imageSize = 224
    @Option(help: "Images per batch.") var batchSize = 32
    @Option(help: "Batches timed (after one untimed batch that fills the shuffle buffer).") var batches = 20
    @Option(help: "Threads decoding each batch (default: the number of cores).") var workers: Int?
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        if imageSize < 1 || batchSize < 1 || batches < 1 {
            throw ValidationError("--image-size, --batch-size and --batches must be at least 1")
        }
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1") }
    }

    func run() throws {
        var reading = DataReading()
        reading.mode = .stream
        if let workers { reading.stream.workers = workers }
        reading.log = { printError($0) }
        guard case .streamed(let stream)? = try reading.load(data, parts: [.train], sizing: .size(imageSize), needs: .label)[.train] else {
            throw CommandFailure("\(data) has no training images to stream")
        }
        var recipe = TrainingOptions()
        recipe.batchSize = batchSize
        let loader = stream.batches(recipe.loaderOptions(mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]), epoch: 0, startBatch: 0)
        defer { loader.stop() }
        guard try loader.next() != nil else { throw CommandFailure("\(data): no batch could be read") }
        let started = Date()
        var images = 0
        for _ in 0..<batches {
            guard let batch = try loader.next() else { break }
            images += batch.labels.count
        }
        let seconds = Date().timeIntervalSince(started)
        let rate = Double(images) / max(seconds, 1e-9)
        if json {
            print(
                "{\"data\": \"\(data)\", \"workers\": \(stream.settings.workers), \"image_size\": \(imageSize), \"batch_size\": \(batchSize), \"images\": \(images), \"images_per_second\": \(format(rate, 1))}"
            )
        } else {
            print(
                "\(stream.readingSummary), \(imageSize) px, batch \(batchSize): \(images) images in \(format(seconds, 2)) s, \(format(rate, 1)) images/s"
            )
        }
    }
}
