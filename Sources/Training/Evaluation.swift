import CLIP
import Datasets
import Foundation
import NN
import Tensors
import ViT

/// How a classifier scores on a labelled set: top-1 and top-5 accuracy, mean loss, per-class accuracy and the
/// confusion matrix (rows: true class, columns: predicted class).
public struct Evaluation: Codable, Equatable, Sendable {
    public var classNames: [String]
    public var count = 0
    public var top1Correct = 0
    public var top5Correct = 0
    public var lossSum: Double = 0
    public var confusion: [[Int]]
    /// A DeiT with a distillation token: the images each head alone classifies right (the scores above are those of
    /// the two heads' average, as DeiT evaluates). nil for a model with one head.
    public var classHeadTop1Correct: Int?
    public var distillationHeadTop1Correct: Int?

    public init(classNames: [String]) {
        self.classNames = classNames
        confusion = Array(repeating: Array(repeating: 0, count: classNames.count), count: classNames.count)
    }

    public var top1: Double { count > 0 ? Double(top1Correct) / Double(count) : 0 }
    public var top5: Double { count > 0 ? Double(top5Correct) / Double(count) : 0 }
    public var loss: Double { count > 0 ? lossSum / Double(count) : 0 }
    /// Top-1 of a distilled model's class head alone, and of its distillation head alone.
    public var classHeadTop1: Double? { classHeadTop1Correct.map { count > 0 ? Double($0) / Double(count) : 0 } }
    public var distillationHeadTop1: Double? { distillationHeadTop1Correct.map { count > 0 ? Double($0) / Double(count) : 0 } }
    /// Accuracy of each class (NaN for a class with no images).
    public var perClass: [Double] {
        confusion.enumerated().map { c, row in
            let total = row.reduce(0, +)
            return total > 0 ? Double(row[c]) / Double(total) : .nan
        }
    }

    /// Adds a batch: logits [B, classes] and the true labels.
    public mutating func add(logits: Tensor, labels: [Int]) {
        precondition(
            logits.rank == 2 && logits.shape[0] == labels.count && logits.shape[1] == classNames.count,
            "logits \(logits.shape) for \(labels.count) labels of \(classNames.count) classes")
        let classes = logits.shape[1]
        let values = logits.pointer
        for (b, label) in labels.enumerated() {
            let row = values + b * classes
            var best = 0, greater = 0
            var maximum = -Float.infinity
            for c in 0..<classes {
                if row[c] > row[best] { best = c }
                if row[c] > row[label] { greater += 1 }
                maximum = max(maximum, row[c])
            }
            // Cross-entropy through log-sum-exp, shifted by the maximum.
            var sum: Double = 0
            for c in 0..<classes { sum += exp(Double(row[c] - maximum)) }
            lossSum += log(sum) + Double(maximum) - Double(row[label])
            count += 1
            if best == label { top1Correct += 1 }
            if greater < 5 { top5Correct += 1 }
            confusion[label][best] += 1
        }
    }

    /// Adds a distilled model's batch: the average's scores as `add(logits:labels:)`, and each head's top-1.
    public mutating func add(_ classification: Classification, labels: [Int]) {
        add(logits: classification.logits, labels: labels)
        guard let classHead = classification.classHeadLogits, let distillationHead = classification.distillationHeadLogits else { return }
        func correct(_ logits: Tensor) -> Int {
            zip(logits.argmax(axis: 1), labels).filter { $0 == $1 }.count
        }
        classHeadTop1Correct = (classHeadTop1Correct ?? 0) + correct(classHead)
        distillationHeadTop1Correct = (distillationHeadTop1Correct ?? 0) + correct(distillationHead)
    }

    /// `{"top1": …, "top5": …, "count": …, "loss": …, "per_class": {"cat": …}, "confusion": [[…]]}`, and for a
    /// distilled model `"class_head_top1"` and `"distillation_head_top1"`.
    public func json() -> String {
        func number(_ x: Double) -> String { x.isFinite ? String(format: "%.4f", x) : "null" }
        func quoted(_ s: String) -> String {
            "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        let perClassText = zip(classNames, perClass).map { "\(quoted($0)): \(number($1))" }.joined(separator: ", ")
        let confusionText = confusion.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }.joined(separator: ", ")
        var heads = ""
        if let classHeadTop1, let distillationHeadTop1 {
            heads = "\"class_head_top1\": \(number(classHeadTop1)), \"distillation_head_top1\": \(number(distillationHeadTop1)), "
        }
        return "{\"top1\": \(number(top1)), \"top5\": \(number(top5)), \"count\": \(count), \"loss\": \(number(loss)), \(heads)"
            + "\"per_class\": {\(perClassText)}, \"confusion\": [\(confusionText)]}"
    }

    /// The confusion matrix as aligned text, true classes down, predictions across.
    public func confusionText() -> String {
        let names = classNames.map { String($0.prefix(10)) }
        let cell = max(6, (confusion.flatMap { $0 }.max() ?? 0).description.count + 1)
        let nameWidth = (names.map(\.count).max() ?? 4) + 1
        func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
        var lines = [
            String(repeating: " ", count: nameWidth) + names.indices.map { pad(String($0), cell) }.joined()
                + "   <- predicted; rows: true class"
        ]
        for (c, row) in confusion.enumerated() {
            lines.append(
                pad(names[c], nameWidth - 1) + " " + row.map { pad(String($0), cell) }.joined()
                    + "   \(c)")
        }
        return lines.joined(separator: "\n")
    }
}

extension Evaluation {
    /// Runs `model` (in evaluation mode, no gradients) over `dataset`, normalised with `mean`/`std`.
    /// `progress` is called with the number of images done after each batch.
    /// With `share`, only this rank's part of each batch (`DataParallel.combine` adds the ranks' parts).
    public static func run(
        _ model: any ImageModel, on dataset: any TrainingImages, batchSize: Int = 256,
        mean: [Float], std: [Float], share: DataShare = .whole, progress: ((Int) -> Void)? = nil
    ) throws -> Evaluation {
        try run(
            model, classify: { model.classify($0) }, on: dataset, batchSize: batchSize, mean: mean, std: std, share: share,
            progress: progress)
    }

    /// A CLIP classifying `dataset` zero-shot: the classes are the data's class names (underscores as spaces) in
    /// prompts from `templates`; the logits are 100 x cosine similarity, as CLIP's.
    public static func zeroShot(
        _ model: CLIPModel, tokenizer: CLIPTokenizer, templates: [String], on dataset: any TrainingImages, batchSize: Int = 256,
        share: DataShare = .whole, progress: ((Int) -> Void)? = nil
    ) throws -> Evaluation {
        let names = dataset.classNames.map { $0.replacingOccurrences(of: "_", with: " ") }
        let classifier = ZeroShotClassifier(model: model, tokenizer: tokenizer, classNames: names, templates: templates)
        return try run(
            model,
            classify: { images in
                let logits = classifier.logits(images)
                return Classification(logits: logits, features: logits)
            }, on: dataset, batchSize: batchSize, mean: model.config.mean, std: model.config.std, share: share, progress: progress)
    }

    private static func run(
        _ model: Module, classify: (Tensor) -> Classification, on dataset: any TrainingImages, batchSize: Int, mean: [Float], std: [Float],
        share: DataShare, progress: ((Int) -> Void)?
    ) throws -> Evaluation {
        let wasTraining = model.training
        model.eval()
        defer { model.train(wasTraining) }
        var options = TrainingLoader.Options(batchSize: batchSize, mean: mean, std: std)
        options.shuffle = false
        options.dropLast = false
        options.share = share
        var evaluation = Evaluation(classNames: dataset.classNames)
        let batches = dataset.batches(options, epoch: 0, startBatch: 0)
        defer { batches.stop() }
        try Autograd.withNoGrad {
            while let batch = try batches.next() {
                guard !batch.labels.isEmpty else { continue }  // a rank's empty share of a short last batch
                evaluation.add(classify(batch.images), labels: batch.labels)
                progress?(evaluation.count)
            }
        }
        return evaluation
    }
}
