import ArgumentParser
import Datasets
import Detection
import Foundation
import Tensors
import Training
import ViT

extension Train {
    /// The options `train --task detection` reads; any other is refused, never ignored.
    static let detectionOptions: Set<String> = [
        "--task", "--data", "--output", "-o", "--resume", "--epochs", "--batch-size", "--lr", "--min-lr", "--warmup", "--weight-decay",
        "--seed", "--max-steps", "--precision", "--max-image-pixels", "--arch", "--width", "--depth", "--heads", "--queries",
        "--backbone-init", "--clip-grad"
    ]

    /// Whether the command line gives `flag` (an option whose default another task's is).
    static func given(_ flag: String) -> Bool { CommandLine.arguments.contains { $0 == flag || $0.hasPrefix(flag + "=") } }

    /// A new DETR run on --data, or the run in `folder` continued.
    func detectionTrainer(_ folder: URL) throws -> DetectionTrainer {
        let refused = ResumedRun.unusedOptions(used: Self.detectionOptions)
        if !refused.isEmpty {
            throw CommandFailure("\(refused.joined(separator: ", ")) \(refused.count == 1 ? "does" : "do") not apply to --task detection")
        }
        let root = URL(fileURLWithPath: data)
        printError("reading \(data) ...")
        let train = try DetectionSet.load(root, part: .train)
        let validation = DetectionSet.annotationFile(in: root, part: .test) != nil ? try DetectionSet.load(root, part: .test) : nil
        printError(
            "\(train.images.count) training images of \(train.images.width)x\(train.images.height), \(train.targets.reduce(0) { $0 + $1.labels.count }) objects, \(train.classNames.count) classes"
                + (validation.map { "; \($0.images.count) validation images" } ?? ""))
        if runOptions.resume {
            return try DetectionTrainer.resume(
                folder: folder, data: train, validation: validation, epochs: runOptions.epochs, precision: runOptions.precision)
        }
        try runOptions.checkNewRun()
        var options = try runOptions.apply(to: DetectionOptions(), flags: ["clip": "--clip-grad"])
        if Self.given("--clip-grad") { options.clip = clipGrad }
        try options.validate()

        var config = DETRConfig()
        (config.classNames, config.auxiliaryLoss) = (train.classNames, true)
        (config.width, config.heads, config.queries) = (width ?? 128, heads ?? 4, queries ?? 20)
        (config.encoderLayers, config.decoderLayers) = (depth ?? 3, depth ?? 3)
        config.feedForward = 4 * config.width
        // The processor brings other images to the training images' size.
        (config.shortestEdge, config.longestEdge) = (
            min(train.images.width, train.images.height), max(train.images.width, train.images.height)
        )
        var backboneWeights: [String: Tensor]?
        if let backboneInit {
            guard let resnet = try CheckpointLoader().loadModel(URL(fileURLWithPath: backboneInit)) as? ResNet else {
                throw CommandFailure("--backbone-init \(backboneInit) is not a ResNet")
            }
            config.backbone = resnet.config
            backboneWeights = resnet.stateDict().filter { !$0.key.hasPrefix("fc.") }
        } else {
            let name = Self.given("--arch") ? arch : "resnet18"
            guard let (block, layers) = ResNet.presets[name] else {
                throw CommandFailure("--arch \(arch) is not a ResNet backbone (\(ResNet.presets.keys.sorted().joined(separator: ", ")))")
            }
            (config.backbone.block, config.backbone.layers) = (block, layers)
        }
        config.backbone.imageSize = train.images.width
        do { try config.validate() } catch let problem as FieldProblem {
            throw CommandFailure(
                problem.described(naming: ["width": "--width", "heads": "--heads", "queries": "--queries", "encoderLayers": "--depth"]))
        }
        try config.checkMemory(batchSize: options.batchSize, height: train.images.height, width: train.images.width)
        GlobalRandom.seed(options.seed)
        let model = try DETR(config)
        if let backboneWeights {
            do { try model.backbone.load(stateDict: backboneWeights, strict: false) } catch {
                throw CommandFailure("--backbone-init \(backboneInit ?? ""): \(error)")
            }
        }
        printError(
            "DETR: \(config.backbone.block) ResNet \(config.backbone.layers) backbone\(backboneInit.map { " from \($0)" } ?? " (random)"), width \(config.width), \(config.heads) heads, \(config.encoderLayers)+\(config.decoderLayers) layers, \(config.queries) queries, \(model.parameterCount) parameters"
        )
        return try DetectionTrainer(model: model, options: options, data: train, validation: validation, folder: folder)
    }
}
