import Checkpoints
import Foundation
import Tensors
import TestSupport
import Testing
import ViT
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

    /// A Hugging Face `CLIPModel` folder (transformers' save_pretrained; `Fixtures/hf-clip/make.py`): the names are
    /// mapped to OpenAI's, the config and normalisation read, and the embeddings and logits equal transformers'.
    @Test func huggingFaceFolderMatchesTransformers() throws {
        let folder = TokenizerTests.fixture("hf-clip")
        #expect(CLIPModel.isCLIPFolder(folder))
        let model = try CLIPModel.load(folder)
        #expect(model.config.embedDim == 24 && model.config.visionHeads == 4 && model.config.textHeads == 2 && model.config.quickGELU)
        #expect(model.config.mean == [0.48145466, 0.4578275, 0.40821073])
        let ref = try SafetensorsFile(contentsOf: folder.appendingPathComponent("reference.safetensors"))
        let tokens = try ref.tensor("text_tokens").toArray().map { Int($0) }
        let texts = (0..<4).map { Array(tokens[($0 * 77)..<(($0 + 1) * 77)]) }
        let (image, text) = Autograd.withNoGrad { (model.encodeImage(try! ref.tensor("image_input")), model.encodeText(texts)) }
        for (a, name) in [(image, "image_embeds"), (text, "text_embeds")] {
            let b = try ref.tensor(name)
            #expect(a.shape == b.shape, "\(name) shape \(a.shape)")
            let worst = zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max() ?? 1
            #expect(worst <= 1e-4, "\(name): max difference \(worst)")
        }
        let logits = Autograd.withNoGrad { model.logits(imageEmbeddings: image, textEmbeddings: text) }
        let worst = zip(logits.toArray(), try ref.tensor("logits_per_image").toArray()).map { abs($0 - $1) }.max() ?? 1
        #expect(worst <= 1e-4, "logits: max difference \(worst)")
        // The tokenizer comes from the folder's vocab.json + merges.txt.
        #expect(try CLIPTokenizer.forModel(in: folder, vocabularySize: nil).tokenize("a photo of a cat.") == Array(tokens[0..<77]))
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
        let tokenizer = try CLIPTokenizer.forModel(in: folder, vocabularySize: nil)  // the fixture's vocab.json + merges.txt
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

/// CLIP's contrastive loss against its definition, its gradients against finite differences, and the clamp of the
/// temperature.
@Suite struct ContrastiveLossTests {
    func tiny() -> CLIPModel {
        var config = CLIPConfig.small(imageSize: 8)
        (config.patchSize, config.visionWidth, config.visionLayers, config.visionHeadWidth) = (4, 16, 1, 8)
        (config.textWidth, config.textHeads, config.textLayers, config.contextLength, config.embedDim) = (16, 2, 1, 8, 4)
        return CLIPModel(config)
    }

    @Test func lossIsTheMeanOfBothDirectionsCrossEntropies() {
        let model = tiny()
        model.logitScale.assign(Tensor(scalar: 1.5))
        let images: [[Float]] = [[1, 0, 0, 0], [0, 2, 0, 0], [1, 1, 1, 0]]
        let texts: [[Float]] = [[1, 0.1, 0, 0], [0, 1, 0.5, 0], [0, 0, 1, 1]]
        let loss = model.contrastiveLoss(
            imageEmbeddings: Tensor(images.flatMap { $0 }, shape: [3, 4]), textEmbeddings: Tensor(texts.flatMap { $0 }, shape: [3, 4])
        ).item()
        func unit(_ v: [Float]) -> [Double] {
            let n = v.map { Double($0 * $0) }.reduce(0, +).squareRoot()
            return v.map { Double($0) / n }
        }
        let scale = Foundation.exp(1.5)
        let logits = images.map { i in texts.map { t in zip(unit(i), unit(t)).map(*).reduce(0, +) * scale } }
        func crossEntropy(_ rows: [[Double]]) -> Double {
            rows.indices.map { r in Foundation.log(rows[r].map(Foundation.exp).reduce(0, +)) - rows[r][r] }.reduce(0, +)
                / Double(rows.count)
        }
        let columns = (0..<3).map { c in logits.map { $0[c] } }
        let expected = (crossEntropy(logits) + crossEntropy(columns)) / 2
        #expect(abs(Double(loss) - expected) < 1e-5, "\(loss) vs \(expected)")
    }

    @Test func gradientsMatchFiniteDifferences() {
        let model = tiny()
        var rng = SeededGenerator(seed: 3)
        let images = Tensor.randn([5, 4], using: &rng), texts = Tensor.randn([5, 4], using: &rng)
        for x in [images, texts, model.logitScale] { x.requiresGrad = true }
        model.contrastiveLoss(imageEmbeddings: images, textEmbeddings: texts).backward()
        let analytic = [images.grad!.toArray(), texts.grad!.toArray(), model.logitScale.grad!.toArray()]
        for (k, x) in [images, texts, model.logitScale].enumerated() {
            for i in 0..<x.count {
                func loss(_ delta: Float) -> Double {
                    var values = x.toArray()
                    values[i] += delta
                    x.assign(Tensor(values, shape: x.shape))
                    defer { values[i] -= delta; x.assign(Tensor(values, shape: x.shape)) }
                    return Double(Autograd.withNoGrad { model.contrastiveLoss(imageEmbeddings: images, textEmbeddings: texts).item() })
                }
                let numeric = (loss(1e-2) - loss(-1e-2)) / 2e-2
                #expect(abs(numeric - Double(analytic[k][i])) < 2e-3, "input \(k) element \(i): \(numeric) vs \(analytic[k][i])")
            }
        }
    }

    @Test func logitScaleIsClampedAtAHundred() {
        let model = tiny()
        model.logitScale.assign(Tensor(scalar: 5))
        model.clampLogitScale()
        #expect(abs(model.logitScale.item() - Float(Foundation.log(100.0))) < 1e-6)
        model.logitScale.assign(Tensor(scalar: 2))
        model.clampLogitScale()
        #expect(model.logitScale.item() == 2)
    }
}

/// A ViT encoder starting CLIP's image tower, and CLIP folders written and read back.
@Suite struct CLIPImageTowerTests {
    @Test func aViTEncoderBecomesTheImageTower() throws {
        var vit = ViTConfig()
        (vit.imageSize, vit.patchSize, vit.width, vit.depth, vit.heads, vit.mlpRatio, vit.numClasses) = (16, 4, 32, 2, 2, 2, 0)
        (vit.data.mean, vit.data.std) = ([0.4, 0.4, 0.4], [0.2, 0.2, 0.2])
        GlobalRandom.seed(3)
        let encoder = try VisionTransformer(vit).stateDict()
        let config = try CLIPConfig.small(imageSize: 16).withImageTower(of: vit)
        #expect(config.visionLayers == 2 && config.visionHeads == 2 && config.visionMLPRatio == 2 && config.mean == [0.4, 0.4, 0.4])
        let clip = CLIPModel(config)
        try clip.loadImageTower(from: encoder)
        let own = Dictionary(uniqueKeysWithValues: clip.namedParameters())
        #expect(own["visual.transformer.resblocks.1.attn.in_proj_weight"]!.toArray() == encoder["blocks.1.attn.qkv.weight"]!.toArray())
        #expect(own["visual.transformer.resblocks.0.mlp.c_proj.bias"]!.toArray() == encoder["blocks.0.mlp.fc2.bias"]!.toArray())
        #expect(own["visual.ln_post.weight"]!.toArray() == encoder["norm.weight"]!.toArray())
        #expect(own["visual.class_embedding"]!.toArray() == encoder["cls_token"]!.toArray())
        // The patch bias moves into the patch positions' embeddings: row 0 (the class token's) is the ViT's own.
        let positions = own["visual.positional_embedding"]!.toArray(), vitPositions = encoder["pos_embed"]!.toArray()
        let bias = encoder["patch_embed.proj.bias"]!.toArray()
        #expect(Array(positions[0..<32]) == Array(vitPositions[0..<32]))
        #expect(zip(positions[32..<64], zip(vitPositions[32..<64], bias)).allSatisfy { abs($0 - ($1.0 + $1.1)) < 1e-6 })
        // A ViT without a class token cannot start the tower.
        var pooled = vit
        pooled.classToken = false
        pooled.pooling = .avg
        #expect(throws: CLIPError.self) { _ = try CLIPConfig.small(imageSize: 16).withImageTower(of: pooled) }

        // Saved as an open_clip folder and read back: the same configuration (MLP ratio included) and weights.
        let folder = try temporaryFolder("swiftvit-clip")
        defer { try? FileManager.default.removeItem(at: folder) }
        try clip.save(to: folder)
        let loaded = try CLIPModel.load(folder)
        #expect(loaded.config == clip.config)
        #expect(loaded.visual.proj.toArray() == clip.visual.proj.toArray())
    }
}
