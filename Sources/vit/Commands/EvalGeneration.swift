import Foundation
import Datasets
import Generation
import Tensors
import Training

extension Eval {
    /// Bits per dimension of an Image Transformer --model on --data's --part (default: test).
    func evaluateGeneration() throws {
        if baseline { return try evaluateBaseline() }
        let folder = try BuiltInModel.resolve(modelOptions.model)
        guard ImageTransformerCheckpoint.holdsModel(folder) else {
            throw CommandFailure("\(folder.path) is not an Image Transformer folder (vit train --task generation writes one)")
        }
        let model = try ImageTransformerCheckpoint.load(folder)
        let c = model.config
        let data = self.data ?? ""
        let loaded = try dataReading.reading.load(data, parts: [part], sizing: .size(c.imageSize), needs: .label)
        guard let images = loaded[part]?.images else { throw CommandFailure("\(data) has no \(part) part") }
        if c.classCount > 0, images.classNames.count != c.classCount {
            throw CommandFailure("the model is conditioned on \(c.classCount) classes, \(data) has \(images.classNames.count)")
        }
        try Precision.refuseInt8(modelOptions.precision, in: "generation")
        let precision = Precision.decideAndSay(modelOptions.precision)
        let bar = ProgressBar(total: images.count, unit: "img")
        var done = 0
        let started = Date()
        let bits = try GenerationTrainer.bitsPerDimension(model, on: images, batchSize: batchSize, precision: precision) { count in
            bar.advance(by: count - done)
            done = count
        }
        let seconds = Date().timeIntervalSince(started)
        if json {
            print("{\"bits_per_dim\": \(bits), \"images\": \(done), \"part\": \"\(part.rawValue)\"}")
        } else {
            print(String(format: "%.4f bits/dim on %d images of %@'s %@ part (%.1f s)", bits, done, data, part.rawValue, seconds))
        }
    }

    /// The independent categorical's bits/dim: fitted to the training part, scored on --part (grey sets as one channel).
    func evaluateBaseline() throws {
        let data = self.data ?? ""
        let parts = try dataReading.reading.load(data, parts: [.train, part], sizing: .native, needs: .label)
        guard let train = parts[.train]?.images, let scored = parts[part]?.images else {
            throw CommandFailure("\(data) needs a training part and a \(part) part")
        }
        let channels = try train.figureImages(64).allSatisfy(Train.isGrey) ? 1 : 3
        var model = IndependentCategorical(length: train.width * train.height * channels)
        var bits = 0.0, images = 0
        for (set, fitting) in [(train, true), (scored, false)] {
            var options = TrainingLoader.Options(batchSize: 256, mean: GenerationTrainer.rawMean, std: GenerationTrainer.rawStd)
            (options.shuffle, options.dropLast) = (false, false)
            let batches = set.batches(options, epoch: 0, startBatch: 0)
            defer { batches.stop() }
            while let batch = try batches.next() {
                let subpixels = GenerationTrainer.subpixels(batch.images, channels: channels)
                if fitting {
                    model.fit(subpixels)
                } else {
                    bits += model.bitsPerDimension(subpixels) * Double(batch.labels.count)
                    images += batch.labels.count
                }
            }
        }
        let result = bits / Double(max(images, 1))
        if json {
            print(
                "{\"bits_per_dim\": \(result), \"images\": \(images), \"part\": \"\(part.rawValue)\", \"model\": \"independent categorical\"}"
            )
        } else {
            print(
                String(
                    format:
                        "%.4f bits/dim on %d images of %@'s %@ part: an independent categorical per position, fitted to its %d training images",
                    result, images, data, part.rawValue, model.images))
        }
    }
}
