import Checkpoints
import Foundation
import Tensors
import Testing
@testable import CLIP

/// CLIP against open_clip (`../shared/fixtures/openclip-vit-p8-w64-l2-text32x2-i32`): image and text embeddings and the
/// image-text logits within 1e-4, from open_clip's weights and config.
@Suite struct CLIPModelTests {
    @Test func embeddingsAndLogitsMatchOpenCLIP() throws {
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: TokenizerTests.fixture("open_clip_config.json"))) as! [String: Any]
        let config = try CLIPConfig(openCLIP: json)
        #expect(config.embedDim == 24 && config.visionHeads == 4 && config.quickGELU)
        let model = CLIPModel(config)
        let weights = try SafetensorsFile(contentsOf: TokenizerTests.fixture("open_clip_model.safetensors")).allTensors(matrices: .float32)
        try model.load(stateDict: weights)
        let ref = try SafetensorsFile(contentsOf: TokenizerTests.fixture("openclip-reference.safetensors"))
        let tokens = try ref.tensor("text_tokens").toArray().map { Int($0) }
        let texts = (0..<4).map { Array(tokens[($0 * 77)..<(($0 + 1) * 77)]) }
        let (image, text) = Autograd.withNoGrad { (model.encodeImage(try! ref.tensor("image_input")), model.encodeText(texts)) }
        func close(_ a: Tensor, _ name: String) throws {
            let b = try ref.tensor(name)
            #expect(a.shape == b.shape, "\(name) shape \(a.shape)")
            let worst = zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max() ?? 1
            #expect(worst <= 1e-4, "\(name): max difference \(worst)")
        }
        try close(image, "image_embeds")
        try close(text, "text_embeds")
        try close(Autograd.withNoGrad { model.logits(imageEmbeddings: image, textEmbeddings: text) }, "logits_per_image")
    }
}

/// Zero-shot classification: prompt ensembling as CLIP's paper, the template sets, and the folder loader.
@Suite struct ZeroShotTests {
    @Test func templateSetsAreCLIPs() {
        #expect(PromptTemplates.cifar10.count == 18 && PromptTemplates.imagenet.count == 80)
        #expect(
            Set(PromptTemplates.imagenet).count == 80
                && (PromptTemplates.cifar10 + PromptTemplates.imagenet).allSatisfy { $0.contains("{}") })
    }

    @Test func ensemblingAndLogitsFollowCLIP() throws {
        let folder = TokenizerTests.fixture("open_clip_model.safetensors").deletingLastPathComponent()
        let model = try CLIPModel.load(folder)
        let tokenizer = try CLIPTokenizer.forModel(in: folder)  // the fixture's vocab.json + merges.txt
        let ref = try SafetensorsFile(contentsOf: TokenizerTests.fixture("openclip-reference.safetensors"))
        let images = try ref.tensor("image_input")
        // One template: each class is its prompt's normalised embedding; logits are 100 x cosine.
        let single = ZeroShotClassifier(model: model, tokenizer: tokenizer, classNames: ["cat", "dog"], templates: ["a photo of a {}."])
        let (logits, direct) = Autograd.withNoGrad {
            let text = model.encodeText(["a photo of a cat.", "a photo of a dog."].map { tokenizer.tokenize($0) })
            return (
                single.logits(images),
                model.logits(imageEmbeddings: model.encodeImage(images), textEmbeddings: text) / model.logitScale.exp() * 100
            )
        }
        let worst = zip(logits.toArray(), direct.toArray()).map { abs($0 - $1) }.max() ?? 1
        #expect(worst < 1e-3, "max difference \(worst)")
        // Several templates: each class row is the renormalised mean of unit vectors.
        let ensemble = ZeroShotClassifier(
            model: model, tokenizer: tokenizer, classNames: ["cat", "dog", "ship"], templates: PromptTemplates.cifar10)
        let norms = Autograd.withNoGrad { ensemble.classEmbeddings.square().sum(axis: 1) }.toArray()
        #expect(ensemble.classEmbeddings.shape == [3, 24] && norms.allSatisfy { abs($0 - 1) < 1e-5 })
    }
}
