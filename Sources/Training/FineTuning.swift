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

        /// One line for the log.
        public var summary: String {
            var text = "\(loaded.count) tensors from the checkpoint; \(head)"
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
    public static func model(
        checkpointConfig: ViTConfig, tensors: [String: Tensor], classNames: [String], pooling: ViTConfig.Pooling?,
        dropout: Float, dropPath: Float, headInit: HeadInit = .zeros
    ) throws -> (model: VisionTransformer, report: Report) {
        var config = checkpointConfig
        var report = Report()
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
        var used = Set<String>()
        for (name, parameter) in model.namedParameters() {
            if headNames.contains(name) && !sameClasses {
                report.fresh.append(name)
                continue
            }
            guard let source = tensors[name], source.shape == parameter.shape else {
                report.fresh.append(name)
                continue
            }
            parameter.assign(source)
            used.insert(name)
            report.loaded.append(name)
        }
        if !sameClasses, headInit == .truncNormal {
            for head in [model.head, model.headDist].compactMap({ $0 }) {
                head.weight.assign(Init.truncatedNormal(head.weight.shape, std: 2e-5))
            }
        }
        report.unused = tensors.keys.filter { !used.contains($0) && !headNames.contains($0) }.sorted()
        return (model, report)
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
