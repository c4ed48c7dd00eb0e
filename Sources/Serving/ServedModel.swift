import CLIP
import Foundation
import Images
import Inference
import Tensors

/// One model the server answers for: its name in the URLs, what it is (a classifier, or CLIP) and its batcher.
public struct ServedModel: Sendable {
    public enum Kind: Sendable {
        case classifier(Classifier)
        case clip(ServedCLIP)
    }

    public let name: String
    public let kind: Kind
    public let batcher: DynamicBatcher

    /// A classifier's batches give logits and pooled features; CLIP's give image embeddings, computed in
    /// `precision` as `vit zeroshot --precision` does.
    public init(name: String, kind: Kind, settings: DynamicBatcher.Settings) {
        self.name = name
        self.kind = kind
        switch kind {
        case .classifier(let classifier):
            batcher = DynamicBatcher(settings: settings) { batch in
                let classified = Autograd.withNoGrad { classifier.model.classify(batch) }
                return (classified.logits, classified.features)
            }
        case .clip(let clip):
            batcher = DynamicBatcher(settings: settings) { batch in (nil, clip.imageEmbeddings(batch)) }
        }
    }

    /// The preprocessing of an image for this model (as `vit predict` or `vit zeroshot` would).
    var transform: EvalTransform {
        switch kind {
        case .classifier(let classifier): return classifier.transform
        case .clip(let clip): return clip.model.transform
        }
    }

    var classifier: Classifier? {
        if case .classifier(let classifier) = kind { return classifier }
        return nil
    }

    var clip: ServedCLIP? {
        if case .clip(let clip) = kind { return clip }
        return nil
    }
}

// Its weights are frozen for inference and only the batcher's thread runs it; its preprocessing is read-only.
extension Classifier: @unchecked Sendable {}

/// A CLIP model behind the server: image embeddings in batches, text embeddings and zero-shot classes on the same
/// weights (one at a time, `DynamicBatcher.exclusively`). The text embeddings of the last class lists asked for are
/// kept, so a client that asks with the same classes again pays only for its image.
public final class ServedCLIP: @unchecked Sendable {
    public let model: CLIPModel
    let tokenizer: CLIPTokenizer
    let precision: DType
    private let cache = NSLock()
    private var classEmbeddings: [[String]: Tensor] = [:]  // [classes, E] each, by (templates + class names)
    private var cachedOrder: [[String]] = []
    static let cachedLists = 16

    public init(model: CLIPModel, tokenizer: CLIPTokenizer, precision: DType) {
        self.model = model
        self.tokenizer = tokenizer
        self.precision = precision
    }

    /// Preprocessed images [B, 3, S, S] -> [B, E], projected, not normalised (open_clip `encode_image`), left in
    /// the compute type: `zeroShotLogits` goes on from it as `vit zeroshot` does, without a rounding between.
    func imageEmbeddings(_ images: Tensor) -> Tensor {
        Autocast.run(precision) { Autograd.withNoGrad { model.encodeImage(images) } }
    }

    /// Image embeddings [B, E] -> zero-shot logits [B, classes] in float32, as `vit zeroshot` computes them.
    func zeroShotLogits(_ embeddings: Tensor, _ classifier: ZeroShotClassifier) -> Tensor {
        Autocast.run(precision) { classifier.logits(imageEmbeddings: embeddings) }.cast(to: .float32)
    }

    /// Texts -> [T, E], projected, not normalised (`encode_text`, as `vit embed --text`).
    func textEmbeddings(_ texts: [String]) -> Tensor {
        let tokens = texts.map { tokenizer.tokenize($0, contextLength: model.config.contextLength) }
        return Autocast.run(precision) { Autograd.withNoGrad { model.encodeText(tokens) } }.cast(to: .float32)
    }

    /// Zero-shot classifier for these classes and templates, from the cache or built (run it with the model held).
    func zeroShot(classes: [String], templates: [String]) -> ZeroShotClassifier {
        let key = templates + ["\u{0}"] + classes
        if let rows = cache.withLock({ classEmbeddings[key] }) {
            return ZeroShotClassifier(model: model, classNames: classes, classEmbeddings: rows)
        }
        // In float32 whatever the precision, as `vit zeroshot` makes them.
        let classifier = ZeroShotClassifier(model: model, tokenizer: tokenizer, classNames: classes, templates: templates)
        cache.withLock {
            classEmbeddings[key] = classifier.classEmbeddings
            cachedOrder.append(key)
            if cachedOrder.count > Self.cachedLists { classEmbeddings[cachedOrder.removeFirst()] = nil }
        }
        return classifier
    }
}
