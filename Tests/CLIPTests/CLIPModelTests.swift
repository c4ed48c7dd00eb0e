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
