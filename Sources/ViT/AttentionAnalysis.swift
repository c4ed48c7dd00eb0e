import Foundation
import Tensors

/// The numbers behind `vit inspect`: what the class token attends to, attention rollout, mean attention distance,
/// and position-embedding similarity. Inputs are the attention probabilities a forward pass collects
/// ([B, heads, T, T] per block, T = prefix tokens + patches).
public enum AttentionAnalysis {
    /// The class token's attention to each patch: [image][head][patch] (the row of token 0, patch columns only).
    public static func classAttention(_ attention: Tensor, prefixTokens: Int) -> [[[Float]]] {
        let (b, h, t) = (attention.shape[0], attention.shape[1], attention.shape[2])
        let values = attention.toArray()
        return (0..<b).map { i in
            (0..<h).map { head in
                let row = ((i * h + head) * t) * t  // query 0 of this image and head
                return Array(values[(row + prefixTokens)..<(row + t)])
            }
        }
    }

    /// Attention rollout (Abnar & Zuidema 2020): per layer, average the heads, add the identity and renormalise
    /// each row; multiply the layers from first to last. Returns the class token's row over the patches for each
    /// image: [image][patch].
    public static func rollout(_ attentions: [Tensor], prefixTokens: Int) -> [[Float]] {
        precondition(!attentions.isEmpty, "rollout needs at least one layer's attention")
        let (b, h, t) = (attentions[0].shape[0], attentions[0].shape[1], attentions[0].shape[2])
        return (0..<b).map { image in
            var joint = identity(t)
            for layer in attentions {
                let values = layer.toArray()
                var a = identity(t)  // I + mean over heads, rows renormalised
                for head in 0..<h {
                    let base = (image * h + head) * t * t
                    for i in 0..<(t * t) { a[i] += Double(values[base + i]) / Double(h) }
                }
                for q in 0..<t {
                    let sum = (0..<t).reduce(0.0) { $0 + a[q * t + $1] }
                    for k in 0..<t { a[q * t + k] /= sum }
                }
                joint = multiply(a, joint, t)  // this layer after the ones before it
            }
            return (prefixTokens..<t).map { Float(joint[$0]) }  // row 0 (class token), patch columns
        }
    }

    /// Mean attention distance in input pixels, per head, averaged over the images: for each query patch, the sum
    /// over key patches of attention × distance between patch centres, with class/distillation tokens left out of
    /// queries and keys and each query's remaining attention renormalised to 1; then the mean over query patches.
    public static func meanDistance(_ attention: Tensor, prefixTokens: Int, gridSize: Int, patchSize: Int) -> [Float] {
        let (b, h, t) = (attention.shape[0], attention.shape[1], attention.shape[2])
        let n = gridSize * gridSize
        precondition(t == prefixTokens + n, "attention over \(t) tokens is not \(prefixTokens) + \(gridSize)x\(gridSize)")
        var distance = [Double](repeating: 0, count: n * n)
        for q in 0..<n {
            for k in 0..<n {
                let dy = Double(q / gridSize - k / gridSize), dx = Double(q % gridSize - k % gridSize)
                distance[q * n + k] = (dx * dx + dy * dy).squareRoot() * Double(patchSize)
            }
        }
        let values = attention.toArray()
        return (0..<h).map { head in
            var total = 0.0
            for image in 0..<b {
                let base = (image * h + head) * t * t
                for q in 0..<n {
                    let row = base + (prefixTokens + q) * t + prefixTokens
                    var mass = 0.0, weighted = 0.0
                    for k in 0..<n {
                        let a = Double(values[row + k])
                        mass += a
                        weighted += a * distance[q * n + k]
                    }
                    total += mass > 0 ? weighted / mass : 0
                }
            }
            return Float(total / Double(b * n))
        }
    }

    /// Cosine similarity between the position embeddings of every pair of patches: [patch][patch].
    public static func positionSimilarity(_ posEmbed: Tensor, prefixTokens: Int) -> [[Float]] {
        let width = posEmbed.shape[2], count = posEmbed.shape[1] - prefixTokens
        let values = posEmbed.toArray()
        let vectors = (0..<count).map { i -> [Double] in
            let start = (prefixTokens + i) * width
            return values[start..<(start + width)].map(Double.init)
        }
        let norms = vectors.map { v in v.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        return (0..<count).map { i in
            (0..<count).map { j in
                let dot = zip(vectors[i], vectors[j]).reduce(0.0) { $0 + $1.0 * $1.1 }
                return Float(dot / max(norms[i] * norms[j], 1e-12))
            }
        }
    }

    private static func identity(_ n: Int) -> [Double] {
        var m = [Double](repeating: 0, count: n * n)
        for i in 0..<n { m[i * n + i] = 1 }
        return m
    }

    private static func multiply(_ a: [Double], _ b: [Double], _ n: Int) -> [Double] {
        var out = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for k in 0..<n { let aik = a[i * n + k]; if aik == 0 { continue }; for j in 0..<n { out[i * n + j] += aik * b[k * n + j] } }
        }
        return out
    }
}
