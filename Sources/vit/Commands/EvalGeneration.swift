import Foundation
import Generation
import Tensors
import Training

extension Eval {
    /// Bits per dimension of an Image Transformer --model on --data's --part (default: test).
    func evaluateGeneration() throws {
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
}
