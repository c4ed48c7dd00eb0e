import Checkpoints
import Foundation
import Tensors
import Testing
@testable import ViT

/// The inspect numbers against independent computations on timm's attention probabilities
/// (`block{i}.attn_probs` of the reference fixture: 2 images, 4 heads, 1 class token + 4x4 patches of 8 px).
@Suite struct AttentionAnalysisTests {
    let reference = try! SafetensorsFileLoader.load("timm-vit-p8-d64-h4-l2-i32")

    @Test func classAttentionIsTheClassRowOverPatches() throws {
        let attention = try reference.tensor("block1.attn_probs")
        let maps = AttentionAnalysis.classAttention(attention, prefixTokens: 1)
        let values = attention.toArray()
        for image in 0..<2 {
            for head in 0..<4 {
                for patch in 0..<16 {
                    #expect(maps[image][head][patch] == values[((image * 4 + head) * 17 + 0) * 17 + 1 + patch])
                }
            }
        }
    }

    @Test func meanDistanceOfKnownPatterns() {
        // Uniform attention over a 2x2 grid of 8-px patches: from any patch, distances 0, 8, 8, 8√2.
        let uniform = Tensor.full([1, 1, 5, 5], 0.2)
        let d = AttentionAnalysis.meanDistance(uniform, prefixTokens: 1, gridSize: 2, patchSize: 8)
        #expect(abs(d[0] - Float((16 + 8 * 2.0.squareRoot()) / 4)) < 1e-5)
        // Each patch attending only to itself (and the class token, which is left out): distance 0.
        var diagonal = [Float](repeating: 0, count: 25)
        for q in 1..<5 { diagonal[q * 5 + q] = 0.5; diagonal[q * 5] = 0.5 }
        #expect(AttentionAnalysis.meanDistance(Tensor(diagonal, shape: [1, 1, 5, 5]), prefixTokens: 1, gridSize: 2, patchSize: 8) == [0])
    }

    @Test func meanDistanceMatchesAnIndependentComputation() throws {
        let attention = try reference.tensor("block0.attn_probs")
        let ours = AttentionAnalysis.meanDistance(attention, prefixTokens: 1, gridSize: 4, patchSize: 8)
        // Independent: patch centres as (x, y) in pixels, Tensor ops for the renormalisation.
        let probabilities = attention.slice(axis: 2, start: 1, length: 16).slice(axis: 3, start: 1, length: 16)  // [2, 4, 16, 16]
        let renormalised = Autograd.withNoGrad { probabilities / probabilities.sum(axis: -1, keepDim: true) }.toArray()
        func centre(_ patch: Int) -> (x: Double, y: Double) { (Double(patch % 4) * 8 + 4, Double(patch / 4) * 8 + 4) }
        for head in 0..<4 {
            var total = 0.0
            for image in 0..<2 {
                for q in 0..<16 {
                    for k in 0..<16 {
                        let a = Double(renormalised[((image * 4 + head) * 16 + q) * 16 + k])
                        let dx: Double = centre(q).x - centre(k).x
                        let dy: Double = centre(q).y - centre(k).y
                        total += a * (dx * dx + dy * dy).squareRoot()
                    }
                }
            }
            #expect(abs(Double(ours[head]) - total / 32) < 1e-4, "head \(head): \(ours[head]) vs \(total / 32)")
        }
    }

    @Test func rolloutMatchesMatrixProducts() throws {
        let layers = try [reference.tensor("block0.attn_probs"), reference.tensor("block1.attn_probs")]
        let ours = AttentionAnalysis.rollout(layers, prefixTokens: 1)
        // Independent: with Tensor ops, Â = (mean_h A + I) / 2 (rows of A sum to 1), joint = Â1 · Â0.
        let identity = Tensor((0..<(17 * 17)).map { i -> Float in i / 17 == i % 17 ? 1 : 0 }, shape: [17, 17])
        let hats = layers.map { layer in Autograd.withNoGrad { (layer.mean(axis: 1) + identity) * 0.5 } }  // [2, 17, 17]
        let joint = Autograd.withNoGrad { hats[1].matmul(hats[0]) }.toArray()
        for image in 0..<2 {
            let expected = (1..<17).map { joint[(image * 17 + 0) * 17 + $0] }
            let worst = zip(ours[image], expected).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-5, "image \(image): rollout differs by \(worst)")
        }
    }

    @Test func positionSimilarityIsCosine() throws {
        let pos = Tensor([1, 0, 9, 9, 0, 2, 3, 3], shape: [1, 4, 2])  // class slot, then (0,2), (3,3)... after prefix
        let s = AttentionAnalysis.positionSimilarity(pos, prefixTokens: 1)
        #expect(s.count == 3 && abs(s[0][0] - 1) < 1e-6)
        #expect(abs(s[0][1] - Float(2.0.squareRoot() / 2)) < 1e-6)  // (9,9)·(0,2) / (|..||..|) = 18 / (9√2 · 2)
    }
}

enum SafetensorsFileLoader {
    static func load(_ folder: String) throws -> SafetensorsFile { try reference(folder) }
}
