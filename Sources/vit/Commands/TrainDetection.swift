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
        "--backbone-init", "--clip-grad", "--log-steps", "--init", "--dropout", "--backbone-width", "--cifar-stem"
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

        let model = try newDetectionModel(for: train, batchSize: options.batchSize, seed: options.seed)
        return try DetectionTrainer(model: model, options: options, data: train, validation: validation, folder: folder)
    }

    /// A new DETR for `data`: random (a --arch ResNet backbone, or --backbone-init's weights), or --init's DETR with
    /// its class head replaced when the classes differ (as transformers' `ignore_mismatched_sizes`).
    private func newDetectionModel(for data: DetectionSet, batchSize: Int, seed: UInt64) throws -> DETR {
        var config = DETRConfig()
        var startWeights: [String: Tensor] = [:]
        if let initialCheckpoint {
            let shape = ["--backbone-init", "--arch", "--width", "--depth", "--heads", "--queries", "--backbone-width", "--cifar-stem"]
                .filter(Self.given)
            if !shape.isEmpty {
                throw CommandFailure("--init gives the whole DETR, its shape included: \(shape.joined(separator: ", ")) cannot change it")
            }
            let start = try DETRCheckpoint.load(try BuiltInModel.resolve(initialCheckpoint))
            config = start.config
            startWeights = start.stateDict()
            if config.classNames.count != data.classNames.count {
                printError(
                    "--init \(initialCheckpoint) has \(config.classNames.count) classes, the data \(data.classNames.count): its class head starts anew"
                )
                startWeights = startWeights.filter { !$0.key.hasPrefix("class_labels_classifier.") }
            }
            if Self.given("--dropout") { config.dropout = dropout }
        } else {
            (config.width, config.heads, config.queries) = (width ?? 128, heads ?? 4, queries ?? 20)
            (config.encoderLayers, config.decoderLayers) = (depth ?? 3, depth ?? 3)
            config.feedForward = 4 * config.width
            config.dropout = Self.given("--dropout") ? dropout : 0.1
            if let backboneInit {
                if Self.given("--backbone-width") || cifarStem {
                    throw CommandFailure(
                        "--backbone-init \(backboneInit) gives the backbone's shape: --backbone-width and --cifar-stem cannot change it")
                }
                guard let resnet = try CheckpointLoader().loadModel(try BuiltInModel.resolve(backboneInit)) as? ResNet else {
                    throw CommandFailure("--backbone-init \(backboneInit) is not a ResNet")
                }
                config.backbone = resnet.config
                // The images as the backbone learned them: its own normalisation (a timm ImageNet ResNet's is DETR's).
                (config.mean, config.std) = (resnet.config.data.mean, resnet.config.data.std)
                for (name, tensor) in resnet.stateDict() where !name.hasPrefix("fc.") {
                    startWeights[DETRCheckpoint.backbonePrefix + name] = tensor
                }
            } else {
                let name = Self.given("--arch") ? arch : "resnet18"
                guard let (block, layers) = ResNet.presets[name] else {
                    throw CommandFailure(
                        "--arch \(arch) is not a ResNet backbone (\(ResNet.presets.keys.sorted().joined(separator: ", ")))")
                }
                (config.backbone.block, config.backbone.layers) = (block, layers)
                let stem = backboneWidth ?? 64
                guard (1...4096).contains(stem) else { throw CommandFailure("--backbone-width must be in 1...4096, got \(stem)") }
                (config.backbone.stemWidth, config.backbone.channels) = (stem, (0..<4).map { stem << $0 })
                config.backbone.cifarStem = cifarStem
            }
        }
        // Every decoder layer is trained (DETR's auxiliary losses); the processor brings other images to the training
        // images' size.
        (config.classNames, config.auxiliaryLoss) = (data.classNames, true)
        (config.shortestEdge, config.longestEdge) = (min(data.images.width, data.images.height), max(data.images.width, data.images.height))
        config.backbone.imageSize = data.images.width
        do { try config.validate() } catch let problem as FieldProblem {
            throw CommandFailure(
                problem.described(
                    naming: [
                        "width": "--width", "heads": "--heads", "queries": "--queries", "encoderLayers": "--depth", "dropout": "--dropout"
                    ]))
        }
        try config.checkMemory(batchSize: batchSize, height: data.images.height, width: data.images.width)
        GlobalRandom.seed(seed)
        let model = try DETR(config)
        if !startWeights.isEmpty {
            do { try model.load(stateDict: startWeights, strict: false) } catch {
                throw CommandFailure("\(initialCheckpoint.map { "--init \($0)" } ?? "--backbone-init \(backboneInit ?? "")"): \(error)")
            }
        }
        let origin =
            initialCheckpoint.map { " from \($0)" } ?? backboneInit.map { ", the backbone from \($0)" } ?? " (random backbone)"
        printError(
            "DETR\(origin): \(config.backbone.block) ResNet \(config.backbone.layers) backbone, width \(config.width), \(config.heads) heads, \(config.encoderLayers)+\(config.decoderLayers) layers, \(config.queries) queries, dropout \(config.dropout ?? 0), \(model.parameterCount) parameters"
        )
        return model
    }
}
