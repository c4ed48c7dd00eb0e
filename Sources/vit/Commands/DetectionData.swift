import ArgumentParser
import Datasets
import Detection
import Foundation
import Images

/// The synthetic detection set the DETR experiment trains on.
struct DetectionData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detection-data",
        abstract: "Write a synthetic COCO-format detection set: classification objects pasted onto textured canvases.",
        discussion:
            "Fashion-MNIST items (cut out by their brightness, tinted) and CIFAR-10 photos (whole squares) are pasted at random sizes and places, 1 to --max-objects per image, later over earlier (a box keeps an occluded object's whole extent). Writes OUTPUT/train/*.png, OUTPUT/val/*.png, instances_train.json and instances_val.json (categories fashion/<name> then cifar10/<name>). The same --seed gives the same set. Objects for the validation part come from the sources' test images."
    )

    @Option(name: .shortAndLong, help: "Output folder.") var output: String
    @Option(help: "Training images.") var train = 2000
    @Option(help: "Validation images.") var val = 500
    @Option(help: "Canvas size in pixels.") var imageSize = 128
    @Option(help: "At most this many objects per image (at least 1).") var maxObjects = 6
    @Option(help: "Seed of everything drawn.") var seed: UInt64 = 0
    @Option(help: "Fashion-MNIST (IDX files; Debian's dataset-fashion-mnist), or 'none'.")
    var fashion = "/usr/share/datasets/fashion-mnist"
    @Option(help: "CIFAR-10 as an image folder or .tar.gz, or 'none'.") var cifar = "../shared/data/cifar10-jpg.tar.gz"

    func validate() throws {
        if train < 0 || val < 0 || train + val < 1 { throw ValidationError("--train and --val must be 0 or more, together at least 1") }
        if !(32...4096).contains(imageSize) { throw ValidationError("--image-size must be in 32...4096, got \(imageSize)") }
        if !(1...100).contains(maxObjects) { throw ValidationError("--max-objects must be in 1...100, got \(maxObjects)") }
        if fashion == "none" && cifar == "none" { throw ValidationError("--fashion and --cifar cannot both be none") }
    }

    func run() throws {
        func sources(_ part: DataPart) throws -> [SyntheticScenes.Source] {
            var out: [SyntheticScenes.Source] = []
            for (name, path, masked) in [("fashion", fashion, true), ("cifar10", cifar, false)] where path != "none" {
                printError("reading \(path) (\(part)) ...")
                guard let set = try ImageDataset.load(URL(fileURLWithPath: path), parts: [part])[part] else {
                    throw CommandFailure("\(path) has no \(part) part")
                }
                // At most 5,000 objects per source and part, drawn from all of it: plenty of variety, little memory.
                out.append(.init(name: name, sampling: set, limit: 5000, seed: seed, masked: masked))
            }
            return out
        }
        let folder = URL(fileURLWithPath: output)
        let bar = ProgressBar(total: train + val, unit: "img")
        var done = 0
        for (part, count, dataPart) in [("train", train, DataPart.train), ("val", val, DataPart.test)] where count > 0 {
            var scenes = SyntheticScenes(sources: try sources(dataPart))
            (scenes.canvasSize, scenes.maxObjects, scenes.seed) = (imageSize, maxObjects, seed)
            scenes.objectSizes = max(8, imageSize / 6)...max(9, imageSize / 2)
            let before = done
            try scenes.write(to: folder, counts: [(part, count)], partIndex: part == "train" ? 0 : 1) {
                bar.advance(by: $0 + before - done); done = before + $0
            }
        }
        printError("wrote \(train) training and \(val) validation images with their COCO annotations to \(output)")
    }
}
