import Checkpoints
import Foundation
import Images
import NN
import Tensors

extension CLIPTokenizer {
    /// OpenAI's merges file as SwiftViT ships it.
    public static func openAI() throws -> CLIPTokenizer {
        guard let url = Bundle.module.url(forResource: "bpe_simple_vocab_16e6.txt", withExtension: "gz") else {
            throw CLIPError("the BPE merges file is missing beside this build (SwiftViT_CLIP.resources)")
        }
        return try CLIPTokenizer(mergesFile: url)
    }

    /// The tokenizer a CLIP folder carries (`bpe_simple_vocab_16e6.txt.gz`, or Hugging Face's `vocab.json` +
    /// `merges.txt`), else the shipped one (every OpenAI and open_clip CLIP uses it); with `vocabularySize` (the
    /// model's), checked to give no id past its embedding.
    public static func forModel(in folder: URL, vocabularySize: Int?) throws -> CLIPTokenizer {
        let files = FileManager.default
        let merges = folder.appendingPathComponent("bpe_simple_vocab_16e6.txt.gz")
        let vocab = folder.appendingPathComponent("vocab.json"), hfMerges = folder.appendingPathComponent("merges.txt")
        let (tokenizer, source): (CLIPTokenizer, URL)
        if files.fileExists(atPath: merges.path) {
            (tokenizer, source) = (try CLIPTokenizer(mergesFile: merges), merges)
        } else if files.fileExists(atPath: vocab.path) && files.fileExists(atPath: hfMerges.path) {
            (tokenizer, source) = (try CLIPTokenizer(vocabulary: vocab, merges: hfMerges), vocab)
        } else {
            (tokenizer, source) = (try openAI(), folder)
        }
        if let vocabularySize { try tokenizer.check(fitting: vocabularySize, source: source) }
        return tokenizer
    }
}

extension CLIPModel {
    /// CLIP's image preprocessing: the shorter side resized to the input size (bicubic), centre-cropped, normalised
    /// with CLIP's mean and std.
    public var transform: EvalTransform {
        EvalTransform(size: config.imageSize, cropPct: 1, filter: .bicubic, mean: config.mean, std: config.std)
    }
}

/// Zero-shot classification (CLIP's prompt ensembling): each class's text embedding is the renormalised mean of its
/// normalised template embeddings; an image's logits are 100 × its normalised embedding · each class's.
public struct ZeroShotClassifier {
    public let model: CLIPModel
    public let classNames: [String]
    /// [classes, E], unit rows.
    public let classEmbeddings: Tensor

    public init(model: CLIPModel, tokenizer: CLIPTokenizer, classNames: [String], templates: [String]) {
        self.model = model
        self.classNames = classNames
        let rows: [Tensor] = Autograd.withNoGrad {
            classNames.map { name in
                let tokens = templates.map {
                    tokenizer.tokenize($0.replacingOccurrences(of: "{}", with: name), contextLength: model.config.contextLength)
                }
                let embeddings = Self.normalised(model.encodeText(tokens))  // [templates, E]
                return Self.normalised(embeddings.mean(axis: 0, keepDim: true))  // [1, E]
            }
        }
        classEmbeddings = Tensor.concat(rows, axis: 0)
    }

    /// With the class embeddings already made (`classEmbeddings` of an earlier classifier of the same model).
    public init(model: CLIPModel, classNames: [String], classEmbeddings: Tensor) {
        (self.model, self.classNames, self.classEmbeddings) = (model, classNames, classEmbeddings)
    }

    static func normalised(_ x: Tensor) -> Tensor { x / x.square().sum(axis: -1, keepDim: true).sqrt() }

    /// Normalised images [B, 3, S, S] -> logits [B, classes].
    public func logits(_ images: Tensor) -> Tensor {
        Autograd.withNoGrad { logits(imageEmbeddings: model.encodeImage(images)) }
    }

    /// Image embeddings [B, E] (`CLIPModel.encodeImage`) -> logits [B, classes].
    public func logits(imageEmbeddings: Tensor) -> Tensor {
        Autograd.withNoGrad { Self.normalised(imageEmbeddings).matmul(classEmbeddings, transposeOther: true) * 100 }
    }
}
