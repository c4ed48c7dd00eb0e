import Checkpoints
import Foundation
import NN
import Tensors
import Testing
import TestSupport
@testable import ViT

/// The fixtures made by timm and Hugging Face (`../shared/fixtures`, copied into Fixtures/): every model loads and
/// computes the reference numbers.
func fixture(_ name: String) -> URL {
    Fixtures.url("ViTTests", name)
}

func reference(_ folder: String) throws -> SafetensorsFile {
    try SafetensorsFile(contentsOf: fixture(folder).appendingPathComponent("reference.safetensors"))
}

/// max |a - b| <= tolerance
func expectWithin(
    _ a: Tensor, _ b: Tensor, _ tolerance: Float, _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(a.shape == b.shape, "\(what): shape \(a.shape) vs \(b.shape)", sourceLocation: sourceLocation)
    let worst = zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max() ?? 0
    #expect(worst <= tolerance, "\(what): max difference \(worst) > \(tolerance)", sourceLocation: sourceLocation)
}

/// Every parameter's gradient (those that require one) against the reference's `grad.<name>`, each within 1e-4 of
/// the tensor's largest value, and the reference has no gradient the model lacks. Returns how many were checked.
@discardableResult
func expectGradients(
    of model: Module, match ref: SafetensorsFile, _ what: String, sourceLocation: SourceLocation = #_sourceLocation
) -> Int {
    var checked = 0
    for (name, parameter) in model.namedParameters() where parameter.requiresGrad {
        guard let expected = try? ref.tensor("grad.\(name)"), let grad = parameter.grad else {
            Issue.record("\(what) grad.\(name): missing in the reference or not computed", sourceLocation: sourceLocation)
            continue
        }
        let scale = max(expected.toArray().map(abs).max() ?? 0, 1e-12)
        let worst = zip(grad.toArray(), expected.toArray()).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-4 * scale, "\(what) grad.\(name): max difference \(worst), scale \(scale)", sourceLocation: sourceLocation)
        checked += 1
    }
    #expect(checked == ref.names.filter { $0.hasPrefix("grad.") }.count, "\(what): gradients checked", sourceLocation: sourceLocation)
    return checked
}

@Suite struct ParityTests {
    /// Logits, block outputs, attention probabilities, final tokens and pre-logits of a timm reference.
    func checkForward(_ folder: String, weights: String? = nil, intermediates: Bool) throws {
        let model = try CheckpointLoader().load(weights.map { fixture(folder).appendingPathComponent($0) } ?? fixture(folder))
        let ref = try reference(folder)
        let outputs = Autograd.withNoGrad {
            model.forward(try! ref.tensor("input"), collectBlockOutputs: true, collectAttentions: true)
        }
        expectWithin(outputs.logits, try ref.tensor("logits"), 1e-4, "\(folder) logits")
        guard intermediates else { return }
        expectWithin(outputs.preLogits, try ref.tensor("pre_logits"), 1e-4, "\(folder) pre_logits")
        for i in 0..<model.config.depth {
            expectWithin(outputs.blockOutputs[i], try ref.tensor("block\(i).out"), 1e-4, "\(folder) block \(i) output")
            expectWithin(outputs.attentions[i], try ref.tensor("block\(i).attn_probs"), 1e-4, "\(folder) block \(i) attention")
        }
        if model.config.pooling == .token {
            expectWithin(outputs.finalTokens, try ref.tensor("final_tokens"), 1e-4, "\(folder) final tokens")
        }
    }

    /// The mean cross-entropy against `labels` and the gradient of every parameter, within 1e-4 of each tensor's
    /// largest magnitude: the end-to-end test of the engine's backward pass.
    func checkGradients(_ folder: String) throws {
        let model = try CheckpointLoader().load(fixture(folder))
        let ref = try reference(folder)
        let loss = model(try ref.tensor("input")).crossEntropy(targets: try ref.integers("labels"))
        expectWithin(loss.reshape([1]), try ref.tensor("loss"), 1e-4, "\(folder) loss")
        loss.backward()
        expectGradients(of: model, match: ref, folder)
    }

    @Test func timmViT() throws {
        try checkForward("timm-vit-p8-d64-h4-l2-i32", intermediates: true)
        try checkGradients("timm-vit-p8-d64-h4-l2-i32")
    }

    @Test func timmGlobalAveragePooling() throws {
        try checkForward("timm-vit-gap-p8-d64-h4-l2-i32", intermediates: true)
        try checkGradients("timm-vit-gap-p8-d64-h4-l2-i32")
    }

    @Test func huggingFaceViT() throws { try checkForward("hf-vit-p8-d64-h4-l2-i32", intermediates: false) }

    @Test func originalJaxNpz() throws { try checkForward("jax-vit-p8-d64-h4-l2-i32", weights: "model.npz", intermediates: false) }

    @Test func deitDistilledTimmAndHuggingFace() throws {
        try checkForward("hf-deit-distilled-p8-d64-h4-l2-i32", intermediates: false)
        let model = try CheckpointLoader().load(fixture("timm-deit-distilled-p8-d64-h4-l2-i32"))
        let ref = try reference("timm-deit-distilled-p8-d64-h4-l2-i32")
        let outputs = Autograd.withNoGrad { model.forward(try! ref.tensor("input")) }
        expectWithin(outputs.logits, try ref.tensor("logits"), 1e-4, "DeiT logits (mean of heads)")
        expectWithin(outputs.classHeadLogits!, try ref.tensor("logits_cls_head"), 1e-4, "DeiT class head")
        expectWithin(outputs.distillationHeadLogits!, try ref.tensor("logits_dist_head"), 1e-4, "DeiT distillation head")
    }

    /// timm's forward API: `forwardHead(forwardFeatures(x))` is timm's logits, with `preLogits` its pooled features;
    /// `forwardIntermediates` gives its block outputs, attention and final tokens (token and average pooling, DeiT).
    @Test(arguments: ["timm-vit-p8-d64-h4-l2-i32", "timm-vit-gap-p8-d64-h4-l2-i32", "timm-deit-distilled-p8-d64-h4-l2-i32"])
    func timmForwardAPI(folder: String) throws {
        let model = try CheckpointLoader().load(fixture(folder))
        let ref = try reference(folder)
        let input = try ref.tensor("input")
        let (features, logits, preLogits) = Autograd.withNoGrad {
            let features = model.forwardFeatures(input)
            return (features, model.forwardHead(features), model.forwardHead(features, preLogits: true))
        }
        expectWithin(logits, try ref.tensor("logits"), 1e-4, "\(folder) forwardHead(forwardFeatures)")
        if ref.names.contains("pre_logits") { expectWithin(preLogits, try ref.tensor("pre_logits"), 1e-4, "\(folder) pre-logits") }
        let intermediates = Autograd.withNoGrad { model.forwardIntermediates(input, attentions: true) }
        #expect(intermediates.blocks.count == model.config.depth && intermediates.attentions.count == model.config.depth)
        expectWithin(intermediates.features, features, 0, "\(folder) intermediates' final tokens")
        for i in 0..<model.config.depth where ref.names.contains("block\(i).out") {
            expectWithin(intermediates.blocks[i], try ref.tensor("block\(i).out"), 1e-4, "\(folder) block \(i) output")
        }
    }

    @Test func positionEmbeddingsResampledToAnotherSize() throws {
        let model = try CheckpointLoader(imageSize: 48).load(fixture("timm-vit-p8-d64-h4-l2-i32"))
        let ref = try reference("timm-vit-p8-d64-h4-l2-i32-at48")
        expectWithin(model.posEmbed!, try ref.tensor("pos_embed_resampled"), 1e-5, "resampled pos_embed")
        let logits = Autograd.withNoGrad { model(try! ref.tensor("input")) }
        expectWithin(logits, try ref.tensor("logits"), 1e-4, "logits at 48x48")
    }
}

/// bf16 inference: the weight matrices converted once, activations in bf16, statistics and accumulation in fp32.
/// The fixtures' logits stay within 2e-2 of the fp32 references, and the fp32 path stays exact (parity above).
@Suite struct BFloat16InferenceTests {
    @Test(
        arguments: [
            ("timm-vit-p8-d64-h4-l2-i32", nil), ("timm-vit-gap-p8-d64-h4-l2-i32", nil), ("hf-vit-p8-d64-h4-l2-i32", nil),
            ("timm-deit-distilled-p8-d64-h4-l2-i32", nil), ("jax-vit-p8-d64-h4-l2-i32", "model.npz")
        ] as [(String, String?)])
    func fixtureLogitsWithin2eMinus2(folder: String, weights: String?) throws {
        let model = try CheckpointLoader().load(weights.map { fixture(folder).appendingPathComponent($0) } ?? fixture(folder))
        model.convertWeights(to: .bfloat16)
        #expect(model.computeDType == .bfloat16 && model.patchEmbed.proj.weight.dtype == .bfloat16)
        #expect(model.blocks[0].norm1.weight.dtype == .float32, "LayerNorm parameters stay fp32")
        let ref = try reference(folder)
        let outputs = Autograd.withNoGrad { model.forward(try! ref.tensor("input"), collectAttentions: true) }
        #expect(outputs.logits.dtype == .float32 && outputs.attentions.allSatisfy { $0.dtype == .float32 })
        expectWithin(outputs.logits, try ref.tensor("logits"), 2e-2, "\(folder) bf16 logits")
        // bf16 is not fp32: the difference is there, or the conversion did nothing.
        let fp32 = try CheckpointLoader().load(weights.map { fixture(folder).appendingPathComponent($0) } ?? fixture(folder))
        let exact = Autograd.withNoGrad { fp32(try! ref.tensor("input")) }
        #expect(zip(exact.toArray(), outputs.logits.toArray()).contains { $0 != $1 })
    }

    /// Converting as the tensors are read (what inference does, so that no fp32 copy is ever whole) gives the same
    /// bits as loading in fp32 and converting after, in every layout (HF's q/k/v concatenated, JAX's kernels permuted).
    @Test(
        arguments: [
            ("timm-vit-p8-d64-h4-l2-i32", nil), ("hf-vit-p8-d64-h4-l2-i32", nil), ("timm-deit-distilled-p8-d64-h4-l2-i32", nil),
            ("jax-vit-p8-d64-h4-l2-i32", "model.npz")
        ] as [(String, String?)])
    func convertingAsReadEqualsConvertingAfter(folder: String, weights: String?) throws {
        let path = weights.map { fixture(folder).appendingPathComponent($0) } ?? fixture(folder)
        let asRead = try CheckpointLoader(weightDType: .bfloat16).load(path)
        let after = try CheckpointLoader().load(path)
        after.convertWeights(to: .bfloat16)
        let a = asRead.namedParameters(), b = after.namedParameters()
        #expect(a.map(\.name) == b.map(\.name))
        for (x, y) in zip(a, b) {
            #expect(x.tensor.dtype == y.tensor.dtype, "\(x.name) dtype")
            #expect(x.tensor.toArray() == y.tensor.toArray(), "\(x.name) values")
        }
    }
}
