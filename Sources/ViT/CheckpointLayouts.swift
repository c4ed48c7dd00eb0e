import Foundation
import Tensors

/// The ways published ViT checkpoints name and lay out their tensors. Everything is mapped to timm's names and
/// layouts at load time, which are SwiftViT's own: `blocks.N.attn.qkv.weight` [3D, D], conv-layout patch weights.
public enum CheckpointLayout: String, Sendable, CaseIterable {
    /// timm `VisionTransformer` (and SwiftViT's native files).
    case timm
    /// Hugging Face `ViTModel`, `ViTForImageClassification`, `DeiTForImageClassificationWithTeacher`: separate
    /// query/key/value, `vit.encoder.layer.N...` names.
    case huggingFace
    /// The original google-research `vision_transformer` npz: `Transformer/encoderblock_N/...`, [in, out] kernels,
    /// [D, heads, head_dim] attention kernels, an HWIO patch kernel.
    case vitJax
    /// big_vision npz: the same with a `params/` prefix and `pos_embedding` outside `Transformer/`, without a class slot.
    case bigVision

    /// Recognises a layout from its tensor names.
    public static func detect(_ names: some Collection<String>) -> CheckpointLayout? {
        if names.contains(where: { $0.hasPrefix("params/") }) { return .bigVision }
        if names.contains(where: { $0.hasPrefix("Transformer/") }) { return .vitJax }
        if names.contains(where: { $0.contains("embeddings.patch_embeddings.projection") }) { return .huggingFace }
        if names.contains("patch_embed.proj.weight") { return .timm }
        return nil
    }

    /// The tensors renamed and re-laid-out as timm's. Names this map does not know pass through unchanged, so that
    /// loading reports them as unexpected.
    public func toTimm(_ tensors: [String: Tensor]) throws -> [String: Tensor] {
        switch self {
        case .timm: return tensors
        case .huggingFace: return try HuggingFaceLayout.toTimm(tensors)
        case .vitJax, .bigVision: return try JaxLayout.toTimm(tensors)
        }
    }
}

struct LayoutError: Error, CustomStringConvertible {
    let description: String
}

/// Joins separate query, key and value projections ([D, D] each, or [D]) into timm's fused qkv ([3D, D], [3D]).
func fuseQKV(_ q: Tensor, _ k: Tensor, _ v: Tensor, name: String) throws -> Tensor {
    guard q.shape == k.shape, k.shape == v.shape, (1...2).contains(q.rank) else {
        throw LayoutError(
            description: "\(name): query, key and value have shapes \(q.shape), \(k.shape), \(v.shape), not one [D, D] or [D]")
    }
    return Autograd.withNoGrad { Tensor.concat([q, k, v], axis: 0) }
}

/// `tensor` when it has one of `ranks` axes and none is empty: a checkpoint's shapes are data, checked before any
/// reshape or permutation indexes them.
func checked(_ tensor: Tensor, _ name: String, rank ranks: Int...) throws -> Tensor {
    guard ranks.contains(tensor.rank), !tensor.shape.contains(0) else {
        throw LayoutError(
            description: "\(name) has shape \(tensor.shape), expected \(ranks.map { "\($0)" }.joined(separator: " or ")) non-empty axes")
    }
    return tensor
}

enum HuggingFaceLayout {
    static let renames: [(String, String)] = [
        ("embeddings.cls_token", "cls_token"),
        ("embeddings.distillation_token", "dist_token"),
        ("embeddings.position_embeddings", "pos_embed"),
        ("embeddings.patch_embeddings.projection.", "patch_embed.proj."),
        ("layernorm.", "norm."),
        ("classifier.", "head."),
        ("cls_classifier.", "head."),
        ("distillation_classifier.", "head_dist.")
    ]
    static let blockRenames: [(String, String)] = [
        ("attention.output.dense.", "attn.proj."),
        ("intermediate.dense.", "mlp.fc1."),
        ("output.dense.", "mlp.fc2."),
        ("layernorm_before.", "norm1."),  // HF's "before" is the pre-attention norm
        ("layernorm_after.", "norm2.")  // and its "after" the pre-MLP norm
    ]

    static func toTimm(_ tensors: [String: Tensor]) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        var qkv: [String: [String: Tensor]] = [:]  // "blocks.N.attn.qkv.weight" -> query/key/value parts
        for (original, tensor) in tensors {
            var name = original
            for prefix in ["vit.", "deit."] where name.hasPrefix(prefix) { name = String(name.dropFirst(prefix.count)) }
            // ViTModel's pooler (dense + tanh on the class token) is not part of the classifier the model computes,
            // and the mask token belongs to masked-image-modelling heads: neither has a place in a ViT here.
            if name.hasPrefix("pooler.") || name == "embeddings.mask_token" { continue }
            if name.hasPrefix("encoder.layer.") {
                let rest = name.dropFirst("encoder.layer.".count)
                guard let dot = rest.firstIndex(of: "."), let index = Int(rest[..<dot]) else { out[original] = tensor; continue }
                let field = String(rest[rest.index(after: dot)...])
                let block = "blocks.\(index)."
                if field.hasPrefix("attention.attention.") {
                    let parts = field.dropFirst("attention.attention.".count).split(separator: ".")  // query.weight
                    guard parts.count == 2 else { out[original] = tensor; continue }
                    qkv[block + "attn.qkv.\(parts[1])", default: [:]][String(parts[0])] = tensor
                    continue
                }
                if let (from, to) = blockRenames.first(where: { field.hasPrefix($0.0) }) {
                    out[block + to + field.dropFirst(from.count)] = tensor
                } else {
                    out[original] = tensor
                }
                continue
            }
            if let (from, to) = renames.first(where: { name.hasPrefix($0.0) }) {
                out[to + name.dropFirst(from.count)] = tensor
            } else {
                out[original] = tensor
            }
        }
        for (name, parts) in qkv {
            guard let q = parts["query"], let k = parts["key"], let v = parts["value"] else {
                throw LayoutError(description: "\(name): Hugging Face attention needs query, key and value, found \(parts.keys.sorted())")
            }
            out[name] = try fuseQKV(q, k, v, name: name)
        }
        return out
    }
}

enum JaxLayout {
    static func toTimm(_ tensors: [String: Tensor]) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        var qkv: [Int: [String: (kernel: Tensor?, bias: Tensor?)]] = [:]
        // Per block, the LayerNorm / attention / MLP module names in order (their numbers differ between
        // vision_transformer (LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3) and big_vision).
        var norms: [Int: Set<String>] = [:]
        // [kH, kW, in, out] (HWIO) -> [out, in, kH, kW]
        func convolutionWeight(_ kernel: Tensor, _ name: String) throws -> Tensor {
            let kernel = try checked(kernel, name, rank: 4)
            return Autograd.withNoGrad { kernel.permute([3, 2, 0, 1]) }
        }
        // [in, out] -> [out, in]
        func linearWeight(_ kernel: Tensor, _ name: String) throws -> Tensor {
            let kernel = try checked(kernel, name, rank: 2)
            return Autograd.withNoGrad { kernel.transpose(0, 1) }
        }

        for (original, tensor) in tensors {
            var name = original.hasPrefix("params/") ? String(original.dropFirst("params/".count)) : original
            if name.hasPrefix("Transformer/") { name = String(name.dropFirst("Transformer/".count)) }
            let path = name.split(separator: "/").map(String.init)
            switch path {
            case ["embedding", "kernel"]:  // [P, P, C, D] -> [D, C, P, P]
                let kernel = try checked(tensor, original, rank: 4)
                out["patch_embed.proj.weight"] = Autograd.withNoGrad { kernel.permute([3, 2, 0, 1]) }
            case ["embedding", "bias"]: out["patch_embed.proj.bias"] = tensor
            case ["cls"]: out["cls_token"] = tensor
            case ["dist"]: out["dist_token"] = tensor
            case ["posembed_input", "pos_embedding"], ["pos_embedding"]: out["pos_embed"] = tensor
            case ["encoder_norm", "scale"]: out["norm.weight"] = tensor
            case ["encoder_norm", "bias"]: out["norm.bias"] = tensor
            case ["head", "kernel"]: out["head.weight"] = try linearWeight(tensor, original)
            case ["head", "bias"]: out["head.bias"] = tensor
            case ["pre_logits", "kernel"]: out["pre_logits.fc.weight"] = try linearWeight(tensor, original)
            case ["pre_logits", "bias"]: out["pre_logits.fc.bias"] = tensor
            case ["conv_root", "kernel"]: out["patch_embed.backbone.stem.conv.weight"] = try convolutionWeight(tensor, original)
            case ["gn_root", "scale"]: out["patch_embed.backbone.stem.norm.weight"] = tensor.reshape([tensor.count])
            case ["gn_root", "bias"]: out["patch_embed.backbone.stem.norm.bias"] = tensor.reshape([tensor.count])
            case let p where p.count == 4 && p[0].hasPrefix("block") && p[1].hasPrefix("unit"):
                // The R50+ViT's ResNet: block<stage>/unit<block>/{conv1..3, gn1..3, conv_proj, gn_proj}/{kernel, scale, bias},
                // stages and blocks counted from 1.
                guard let stage = Int(p[0].dropFirst("block".count)), let unit = Int(p[1].dropFirst("unit".count)), stage >= 1, unit >= 1
                else {
                    out[original] = tensor
                    continue
                }
                let block = "patch_embed.backbone.stages.\(stage - 1).blocks.\(unit - 1)."
                let layer: String
                switch p[2] {
                case "conv_proj": layer = "downsample.conv"
                case "gn_proj": layer = "downsample.norm"
                case let name where name.hasPrefix("conv") || name.hasPrefix("gn"):
                    layer = name.hasPrefix("conv") ? name : "norm" + name.dropFirst("gn".count)
                default:
                    out[original] = tensor
                    continue
                }
                switch p[3] {
                case "kernel": out[block + layer + ".weight"] = try convolutionWeight(tensor, original)
                case "scale": out[block + layer + ".weight"] = tensor.reshape([tensor.count])
                case "bias": out[block + layer + ".bias"] = tensor.reshape([tensor.count])
                default: out[original] = tensor
                }
            default:
                guard path.count >= 3, path[0].hasPrefix("encoderblock_"), let index = Int(path[0].dropFirst("encoderblock_".count)) else {
                    out[original] = tensor
                    continue
                }
                let block = "blocks.\(index)."
                let module = path[1], leaf = path.last!
                if module.hasPrefix("LayerNorm_") {
                    norms[index, default: []].insert(module)
                    out["\(block)\(module).\(leaf == "scale" ? "weight" : leaf)"] = tensor  // renamed below
                } else if module.hasPrefix("MultiHeadDotProductAttention_"), path.count == 4 {
                    let projection = path[2]
                    if projection == "out" {
                        if leaf == "kernel" {  // [heads, hd, D] -> [D, D] -> [out, in]
                            let kernel = try checked(tensor, original, rank: 3, 2)
                            out[block + "attn.proj.weight"] = try linearWeight(
                                kernel.reshape([kernel.count / kernel.shape.last!, kernel.shape.last!]), original)
                        } else {
                            out[block + "attn.proj.bias"] = tensor
                        }
                    } else if leaf == "kernel" {  // [D, heads, hd] -> [D, D] -> [out, in]
                        let kernel = try checked(tensor, original, rank: 3, 2)
                        let d = kernel.shape[0]
                        qkv[index, default: [:]][projection, default: (nil, nil)].kernel = try linearWeight(
                            kernel.reshape([d, kernel.count / d]), original)
                    } else {  // [heads, hd] -> [D]
                        qkv[index, default: [:]][projection, default: (nil, nil)].bias = tensor.reshape([tensor.count])
                    }
                } else if module.hasPrefix("MlpBlock_"), path.count == 4 {
                    let fc = path[2] == "Dense_0" ? "fc1" : "fc2"
                    out["\(block)mlp.\(fc).\(leaf == "kernel" ? "weight" : "bias")"] =
                        leaf == "kernel" ? try linearWeight(tensor, original) : tensor
                } else {
                    out[original] = tensor
                }
            }
        }
        for (index, modules) in norms {
            for (position, module) in modules.sorted(by: { $0.numericSuffix < $1.numericSuffix }).enumerated() {
                for leaf in ["weight", "bias"] {
                    if let t = out.removeValue(forKey: "blocks.\(index).\(module).\(leaf)") {
                        out["blocks.\(index).norm\(position + 1).\(leaf)"] = t
                    }
                }
            }
        }
        for (index, parts) in qkv {
            guard let q = parts["query"], let k = parts["key"], let v = parts["value"],
                let qk = q.kernel, let kk = k.kernel, let vk = v.kernel
            else {
                throw LayoutError(description: "encoderblock_\(index): attention needs query, key and value kernels")
            }
            out["blocks.\(index).attn.qkv.weight"] = try fuseQKV(qk, kk, vk, name: "encoderblock_\(index) attention kernels")
            if let qb = q.bias, let kb = k.bias, let vb = v.bias {
                out["blocks.\(index).attn.qkv.bias"] = try fuseQKV(qb, kb, vb, name: "encoderblock_\(index) attention biases")
            }
        }
        return out
    }
}

private extension String {
    var numericSuffix: Int { Int(split(separator: "_").last ?? "") ?? 0 }
}
