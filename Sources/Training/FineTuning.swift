import Foundation
import NN
import Tensors
import ViT

/// Starting a training run from a checkpoint (`vit train --init`): the model is built for the new data (its classes,
/// the chosen pooling, the run's dropout and drop path) and every checkpoint tensor that fits it by name and shape is
/// copied in, as timm's `load_pretrained` and MAE's fine-tuning script do. What did not fit is reported, not hidden.
public enum FineTuning {
    /// How a new head starts: timm's zeros, or MAE's truncated normal with std 2e-5 (its `main_finetune.py`).
    public enum HeadInit: String, Sendable, CaseIterable {
        case zeros
        case truncNormal = "trunc-normal"
    }

    /// What came from the checkpoint and what did not.
    public struct Report: Sendable {
        /// Parameters copied from the checkpoint.
        public var loaded: [String] = []
        /// Parameters that start fresh (a new head, a new fc_norm), with why.
        public var fresh: [String] = []
        /// Checkpoint tensors the model has no place for (an MAE decoder, the norm that average pooling replaces).
        public var unused: [String] = []
        /// Why the head was kept or replaced, for the log.
        public var head: String = ""
        /// What was added to the checkpoint's architecture (a distillation token), for the log.
        public var added: String?

        /// One line for the log.
        public var summary: String {
            var text = "\(loaded.count) tensors from the checkpoint; \(head)"
            if let added { text += "; \(added)" }
            if !fresh.isEmpty { text += "; new: \(fresh.joined(separator: ", "))" }
            if !unused.isEmpty {
                let shown = unused.prefix(6).joined(separator: ", ")
                text += "; not used: \(shown)\(unused.count > 6 ? " and \(unused.count - 6) more" : "")"
            }
            return text
        }
    }

    /// The model for data with `classNames`, from a checkpoint's configuration and tensors (`CheckpointLoader.read`,
    /// already at the training image size). `pooling` switches the pooling (average pooling gets a new `fc_norm`, as
    /// MAE fine-tunes); nil keeps the checkpoint's. New parameters (the head when the classes differ) are
    /// initialised as a new model's are: timm's zero head.
    ///
    /// `distilled` gives a checkpoint without one a distillation token (DeiT's, to distil a teacher into a
    /// pre-trained encoder such as MAE's): the token starts as a copy of the class token and its position as the
    /// class token's, so the new head reads features the encoder already makes.
    public static func model(
        checkpointConfig: ViTConfig, tensors: [String: Tensor], classNames: [String], pooling: ViTConfig.Pooling?,
        dropout: Float, dropPath: Float, headInit: HeadInit = .zeros, distilled: Bool = false
    ) throws -> (model: VisionTransformer, report: Report) {
        var config = checkpointConfig
        var tensors = tensors
        var report = Report()
        if distilled && !config.distillationToken {
            guard config.classToken, let cls = tensors["cls_token"] else {
                throw TrainingError.badOptions("a distillation token joins a class token, and the checkpoint has none")
            }
            config.distillationToken = true
            tensors["dist_token"] = cls.copy()
            if !config.noEmbedClass, let pos = tensors["pos_embed"], pos.rank == 3, pos.shape[1] >= 1 {
                // [1, 1 + N, D] -> [1, 2 + N, D]: the class token's position twice, then the patches'.
                let first = pos.slice(axis: 1, start: 0, length: 1)
                tensors["pos_embed"] = Tensor.concat([first, first, pos.slice(axis: 1, start: 1, length: pos.shape[1] - 1)], axis: 1)
            }
            report.added = "distillation token added (dist_token from cls_token, its position from the class token's)"
        }
        let sameClasses =
            config.numClasses == classNames.count && (config.labels == nil || config.labels == classNames) && tensors["head.weight"] != nil
        if sameClasses {
            report.head = "head kept (\(classNames.count) classes\(config.labels == nil ? "; the checkpoint names none" : ", same names"))"
        } else {
            let before = config.numClasses == 0 ? "no head" : "\(config.numClasses) classes"
            let initialised = headInit == .zeros ? "initialised to zero" : "initialised truncated-normal, std 2e-5"
            // Same count, other names (CIFAR-10's classes -> Fashion-MNIST's): say so, or "10 classes; 10 classes" puzzles.
            let why = config.numClasses == classNames.count ? ", other names: \(classNames.prefix(3).joined(separator: ", ")), ..." : ""
            report.head = "head replaced (checkpoint: \(before); data: \(classNames.count) classes\(why)), \(initialised)"
        }
        config.numClasses = classNames.count
        config.labels = classNames
        if let pooling, pooling != config.pooling {
            config.pooling = pooling
            config.fcNorm = nil  // average pooling normalises after pooling (fc_norm), token pooling before (norm)
        }
        config.dropout = dropout
        config.dropPath = dropPath
        do { try config.validate() } catch { throw TrainingError.badOptions("the fine-tuned architecture: \(error)") }
        let model = try VisionTransformer(config)
        let headNames: Set<String> = ["head.weight", "head.bias", "head_dist.weight", "head_dist.bias"]
        copyFitting(tensors, into: model, isHead: headNames.contains, keepHead: sameClasses, report: &report)
        if !sameClasses, headInit == .truncNormal {
            for head in [model.head, model.headDist].compactMap({ $0 }) {
                head.weight.assign(Init.truncatedNormal(head.weight.shape, std: 2e-5))
            }
        }
        return (model, report)
    }

    /// A ResNet for data with `classNames` at `imageSize` from a pretrained one: every tensor (running statistics
    /// included) copied, the `fc` head kept when the classes match by count and name, else new (zeros, or MAE's
    /// truncated normal), as timm's `reset_classifier`. The normalisation stays the checkpoint's.
    public static func resNet(
        from pretrained: ResNet, classNames: [String], imageSize: Int, headInit: HeadInit = .zeros
    ) throws -> (model: ResNet, report: Report) {
        var config = pretrained.config
        var report = Report()
        let sameClasses =
            config.numClasses == classNames.count && (config.labels == nil || config.labels == classNames) && pretrained.fc != nil
        let before = config.numClasses == 0 ? "no head" : "\(config.numClasses) classes"
        report.head =
            sameClasses
            ? "head kept (\(classNames.count) classes\(config.labels == nil ? "; the checkpoint names none" : ", same names"))"
            : "head replaced (checkpoint: \(before); data: \(classNames.count) classes), "
                + (headInit == .zeros ? "initialised to zero" : "initialised truncated-normal, std 2e-5")
        (config.numClasses, config.labels, config.imageSize) = (classNames.count, classNames, imageSize)
        config.data.inputSize = [3, imageSize, imageSize]
        do { try config.validate() } catch { throw TrainingError.badOptions("the fine-tuned architecture: \(error)") }
        let model = try ResNet(config)  // initialised as a new one: what the checkpoint does not fill starts as timm's would
        copyFitting(pretrained.stateDict(), into: model, isHead: { $0.hasPrefix("fc.") }, keepHead: sameClasses, report: &report)
        if !sameClasses, let fc = model.fc {
            fc.weight.assign(headInit == .zeros ? Tensor.zeros(fc.weight.shape) : Init.truncatedNormal(fc.weight.shape, std: 2e-5))
            if let bias = fc.bias { bias.assign(Tensor.zeros(bias.shape)) }
        }
        return (model, report)
    }

    /// Copies into `model` every tensor that fits by name and shape (the head's only with `keepHead`) and records
    /// what was loaded, what starts fresh and which tensors went unused (a replaced head's are not listed).
    private static func copyFitting(
        _ tensors: [String: Tensor], into model: Module, isHead: (String) -> Bool, keepHead: Bool, report: inout Report
    ) {
        var used = Set<String>()
        for (name, parameter) in model.namedParameters() {
            guard keepHead || !isHead(name), let source = tensors[name], source.shape == parameter.shape else {
                report.fresh.append(name)
                continue
            }
            parameter.assign(source)
            used.insert(name)
            report.loaded.append(name)
        }
        report.unused = tensors.keys.filter { !used.contains($0) && !isHead($0) }.sorted()
    }

    /// Only the head trains (a linear probe): every other parameter stops requiring gradients, so the backbone is
    /// run forward only and no optimiser state is kept for it.
    public static func freezeAllButHead(_ model: any ImageModel) {
        let heads = ["head.", "head_dist.", "fc."]  // a ViT's (and DeiT's second) head, a ResNet's
        for (name, parameter) in model.namedParameters() where !heads.contains(where: { name.hasPrefix($0) }) {
            parameter.requiresGrad = false
        }
    }
}
