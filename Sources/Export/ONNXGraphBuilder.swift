import Foundation
import NN
import SwiftProtobuf
import Tensors

/// Builds an ONNX graph (opset 17) one operator at a time: each value gets a fresh name, each weight becomes a
/// float32 initializer named after its parameter (`blocks.0.attn.qkv.weight`), and the pieces every ViT shares
/// (patches, prefix tokens, pre-norm blocks, heads) are written once here. The batch axis stays symbolic
/// (`batch`); every other size is fixed, as the position embeddings fix the resolution.
final class ONNXGraphBuilder {
    static let opset: Int64 = 17
    private(set) var graph = Onnx_GraphProto()
    private var counter = 0
    /// Initializers by name: a weight used twice (fc_norm on two tokens) is stored once.
    private var stored: Set<String> = []

    init(name: String) { graph.name = name }

    // MARK: values

    private func fresh(_ hint: String) -> String {
        counter += 1
        return "\(hint)_\(counter)"
    }

    /// A float32 initializer: `tensor`'s values (any dtype, widened) with `shape` (default its own).
    @discardableResult
    func weight(_ name: String, _ tensor: Tensor, shape: [Int]? = nil) -> String {
        if stored.contains(name) { return name }
        return floats(name, tensor.cast(to: .float32).toArray(), shape: shape ?? tensor.shape)
    }

    /// A weight matrix [out, in] stored transposed [in, out], as MatMul takes it.
    func transposed(_ name: String, _ matrix: Tensor) -> String {
        if stored.contains(name + "_transposed") { return name + "_transposed" }
        return weight(name + "_transposed", matrix.cast(to: .float32).permute([1, 0]))
    }

    @discardableResult
    func floats(_ name: String, _ values: [Float], shape: [Int]) -> String {
        guard stored.insert(name).inserted else { return name }
        var tensor = Onnx_TensorProto()
        tensor.name = name
        tensor.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensor.dims = shape.map(Int64.init)
        // ONNX stores raw data little-endian, as x86-64 and arm64 hold it.
        tensor.rawData = values.withUnsafeBufferPointer { Data(buffer: $0) }
        graph.initializer.append(tensor)
        return name
    }

    func scalar(_ value: Float) -> String { floats(fresh("const"), [value], shape: []) }

    func int64s(_ values: [Int], scalar: Bool = false) -> String {
        var tensor = Onnx_TensorProto()
        tensor.name = fresh("const")
        tensor.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        tensor.dims = scalar ? [] : [Int64(values.count)]
        tensor.rawData = values.map(Int64.init).withUnsafeBufferPointer { Data(buffer: $0) }
        graph.initializer.append(tensor)
        return tensor.name
    }

    // MARK: operators

    enum Attribute {
        case int(Int)
        case ints([Int])
        case float(Float)
    }

    /// One operator; its output's name.
    @discardableResult
    func op(_ type: String, _ inputs: [String], _ attributes: [String: Attribute] = [:], output: String? = nil) -> String {
        var node = Onnx_NodeProto()
        node.opType = type
        node.input = inputs
        let name = output ?? fresh(type)
        node.output = [name]
        node.name = name
        node.attribute = attributes.sorted { $0.key < $1.key }.map { key, value in
            var attribute = Onnx_AttributeProto()
            attribute.name = key
            switch value {
            case .int(let v): (attribute.type, attribute.i) = (.int, Int64(v))
            case .ints(let v): (attribute.type, attribute.ints) = (.ints, v.map(Int64.init))
            case .float(let v): (attribute.type, attribute.f) = (.float, v)
            }
            return attribute
        }
        graph.node.append(node)
        return name
    }

    func input(_ name: String, _ shape: [Int?]) { graph.input.append(Self.valueInfo(name, shape)) }
    func output(_ name: String, _ shape: [Int?]) { graph.output.append(Self.valueInfo(name, shape)) }

    /// A float32 value of `shape`, nil dimensions being the symbolic `batch`.
    static func valueInfo(_ name: String, _ shape: [Int?]) -> Onnx_ValueInfoProto {
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type.tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        info.type.tensorType.shape.dim = shape.map { size in
            var dimension = Onnx_TensorShapeProto.Dimension()
            if let size { dimension.dimValue = Int64(size) } else { dimension.dimParam = "batch" }
            return dimension
        }
        return info
    }

    // MARK: layers

    /// x [..., in] -> [..., out]: MatMul with the transposed weight, then the bias.
    func linear(_ x: String, _ layer: Linear, _ name: String) -> String {
        linear(x, weight: layer.weight, bias: layer.bias, name)
    }

    func linear(_ x: String, weight: Tensor, bias: Tensor?, _ name: String) -> String {
        let product = op("MatMul", [x, transposed("\(name).weight", weight)])
        guard let bias else { return product }
        return op("Add", [product, self.weight("\(name).bias", bias)])
    }

    /// x [B, F] -> [B, out] with Gemm (the weight as stored, [out, in]).
    func gemm(_ x: String, _ layer: Linear, _ name: String) -> String {
        var inputs = [x, weight("\(name).weight", layer.weight)]
        if let bias = layer.bias { inputs.append(weight("\(name).bias", bias)) }
        return op("Gemm", inputs, ["transB": .int(1)])
    }

    func layerNorm(_ x: String, _ norm: LayerNorm, _ name: String) -> String {
        op(
            "LayerNormalization", [x, weight("\(name).weight", norm.weight), weight("\(name).bias", norm.bias)],
            ["axis": .int(-1), "epsilon": .float(norm.eps)])
    }

    enum Activation {
        case geluErf, geluTanh, quickGELU
    }

    /// GELU as opset 17 spells it (Gelu itself is opset 20): 0.5 x (1 + erf(x / √2)), or its tanh form; QuickGELU
    /// x · sigmoid(1.702 x).
    func activation(_ x: String, _ kind: Activation) -> String {
        switch kind {
        case .geluErf:
            let erf = op("Erf", [op("Div", [x, scalar(Float(2).squareRoot())])])
            return op("Mul", [op("Mul", [x, op("Add", [erf, scalar(1)])]), scalar(0.5)])
        case .geluTanh:
            let cube = op("Mul", [op("Mul", [x, x]), x])
            let inner = op("Mul", [op("Add", [x, op("Mul", [cube, scalar(0.044715)])]), scalar((2 / Float.pi).squareRoot())])
            return op("Mul", [op("Mul", [x, op("Add", [op("Tanh", [inner]), scalar(1)])]), scalar(0.5)])
        case .quickGELU:
            return op("Mul", [x, op("Sigmoid", [op("Mul", [x, scalar(1.702)])])])
        }
    }

    /// Multi-head self-attention on x [B, T, D] with a packed q|k|v projection [3D, D] (timm's `qkv`, CLIP's
    /// `in_proj`), then the output projection.
    func attention(
        _ x: String, tokens: Int, width: Int, heads: Int, scale: Float, qkv: (weight: Tensor, bias: Tensor?, name: String),
        proj: Linear, projName: String
    ) -> String {
        let packed = linear(x, weight: qkv.weight, bias: qkv.bias, qkv.name)  // [B, T, 3D]
        let split = op("Reshape", [packed, int64s([0, tokens, 3, heads, width / heads])])  // [B, T, 3, H, hd]
        let parts = op("Transpose", [split], ["perm": .ints([2, 0, 3, 1, 4])])  // [3, B, H, T, hd]
        let (q, k, v) = (
            op("Gather", [parts, int64s([0], scalar: true)]), op("Gather", [parts, int64s([1], scalar: true)]),
            op("Gather", [parts, int64s([2], scalar: true)])
        )  // [B, H, T, hd] each
        let scores = op("Mul", [op("MatMul", [q, op("Transpose", [k], ["perm": .ints([0, 1, 3, 2])])]), scalar(scale)])  // [B, H, T, T]
        let mixed = op("MatMul", [op("Softmax", [scores], ["axis": .int(-1)]), v])  // [B, H, T, hd]
        let merged = op("Reshape", [op("Transpose", [mixed], ["perm": .ints([0, 2, 1, 3])]), int64s([0, tokens, width])])  // [B, T, D]
        return linear(merged, proj, projName)
    }

    /// A pre-norm encoder block: x + attention(norm1(x)), then + MLP(norm2(x)).
    struct BlockWeights {
        let norm1: LayerNorm, norm2: LayerNorm
        let qkvWeight: Tensor, qkvBias: Tensor?
        let proj: Linear, fc1: Linear, fc2: Linear
        let heads: Int, scale: Float
        let activation: Activation
        /// The checkpoint's names of each part, under the block's prefix.
        let names: (norm1: String, qkv: String, proj: String, norm2: String, fc1: String, fc2: String)
    }

    func block(_ x: String, _ w: BlockWeights, prefix: String, tokens: Int) -> String {
        let width = w.norm1.weight.count
        let attended = attention(
            layerNorm(x, w.norm1, "\(prefix).\(w.names.norm1)"), tokens: tokens, width: width, heads: w.heads, scale: w.scale,
            qkv: (w.qkvWeight, w.qkvBias, "\(prefix).\(w.names.qkv)"), proj: w.proj, projName: "\(prefix).\(w.names.proj)")
        let h = op("Add", [x, attended])
        let hidden = activation(
            linear(layerNorm(h, w.norm2, "\(prefix).\(w.names.norm2)"), w.fc1, "\(prefix).\(w.names.fc1)"), w.activation)
        return op("Add", [h, linear(hidden, w.fc2, "\(prefix).\(w.names.fc2)")])
    }

    /// images [B, C, S, S] -> patch tokens [B, N, D]: a convolution with kernel = stride = P, flattened.
    func patches(_ images: String, kernel: Tensor, bias: Tensor?, name: String, patchSize: Int, count: Int) -> String {
        var inputs = [images, weight("\(name).weight", kernel)]
        if let bias { inputs.append(weight("\(name).bias", bias)) }
        let conv = op("Conv", inputs, ["kernel_shape": .ints([patchSize, patchSize]), "strides": .ints([patchSize, patchSize])])
        let width = kernel.shape[0]
        return op("Transpose", [op("Reshape", [conv, int64s([0, width, count])])], ["perm": .ints([0, 2, 1])])
    }

    /// A learned token [1, 1, D] repeated over the batch of `like` ([B, ...]): [B, 1, D].
    func batchOf(_ token: String, width: Int, like: String) -> String {
        let batch = op("Shape", [like], ["start": .int(0), "end": .int(1)])  // [1]: B
        return op("Expand", [token, op("Concat", [batch, int64s([1, width])], ["axis": .int(0)])])
    }

    /// The token at `index` of x [B, T, D]: [B, D].
    func token(_ x: String, _ index: Int) -> String { op("Gather", [x, int64s([index], scalar: true)], ["axis": .int(1)]) }

    /// The whole model: opset 17, the producer, and `metadata` (preprocessing, labels) as metadata_props.
    func model(metadata: [String: String]) -> Onnx_ModelProto {
        var model = Onnx_ModelProto()
        model.irVersion = 8  // ONNX 1.13, the first with opset 17
        model.producerName = "swiftvit"
        model.producerVersion = "1"
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = Self.opset
        model.opsetImport = [opset]
        model.graph = graph
        model.metadataProps = metadata.sorted { $0.key < $1.key }.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            (entry.key, entry.value) = (key, value)
            return entry
        }
        return model
    }
}
