import Foundation
import Tensors

@testable import Export

/// Runs an exported ONNX graph on SwiftViT's tensors, operator by operator as the ONNX specification defines each
/// (opset 17), for exactly the operators `vit export` writes: the test's reference, independent of the exporter's
/// own builder. An operator it does not know fails the test with its name.
struct ONNXInterpreter {
    enum Value {
        case floats(Tensor)
        case ints([Int])
    }

    struct Unsupported: Error, CustomStringConvertible {
        let description: String
    }

    let graph: Onnx_GraphProto

    func run(_ inputs: [String: Tensor]) throws -> [String: Tensor] {
        var values: [String: Value] = inputs.mapValues { .floats($0) }
        for tensor in graph.initializer {
            let shape = tensor.dims.map(Int.init)
            switch Onnx_TensorProto.DataType(rawValue: Int(tensor.dataType)) {
            case .float:
                let floats = tensor.rawData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                values[tensor.name] = .floats(Tensor(floats, shape: shape))
            case .int64:
                values[tensor.name] = .ints(tensor.rawData.withUnsafeBytes { $0.bindMemory(to: Int64.self).map(Int.init) })
            default: throw Unsupported(description: "initializer \(tensor.name) of data type \(tensor.dataType)")
            }
        }
        for node in graph.node {
            let attributes = Dictionary(node.attribute.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            func floats(_ i: Int) throws -> Tensor {
                guard i < node.input.count, case .floats(let t) = values[node.input[i]] else {
                    throw Unsupported(description: "\(node.opType) \(node.name): input \(i) is not a float tensor defined before")
                }
                return t
            }
            func ints(_ i: Int) throws -> [Int] {
                guard i < node.input.count, case .ints(let v) = values[node.input[i]] else {
                    throw Unsupported(description: "\(node.opType) \(node.name): input \(i) is not an int64 tensor defined before")
                }
                return v
            }
            func int(_ name: String, _ fallback: Int) -> Int { attributes[name].map { Int($0.i) } ?? fallback }
            func intList(_ name: String) -> [Int] { attributes[name]?.ints.map(Int.init) ?? [] }
            let result: Value
            switch node.opType {
            case "Add", "Mul", "Div":
                let (a, b) = (try floats(0), try floats(1))
                result = .floats(try Self.broadcast(node.opType, a, b))
            case "MatMul":
                let (a, b) = (try floats(0), try floats(1))
                if b.rank == 2 && a.rank > 2 {
                    let rows = a.shape.dropLast().reduce(1, *)
                    result = .floats(a.reshape([rows, a.shape.last ?? 0]).matmul(b).reshape(Array(a.shape.dropLast()) + [b.shape[1]]))
                } else {
                    result = .floats(a.matmul(b))
                }
            case "Gemm":
                let a = try floats(0), b = try floats(1)
                var y = a.matmul(b, transposeOther: int("transB", 0) == 1)
                if node.input.count > 2 { y = try Self.broadcast("Add", y, try floats(2)) }
                result = .floats(y)
            case "Conv":
                let strides = intList("strides")
                guard Set(strides).count == 1, let stride = strides.first else { throw Unsupported(description: "Conv strides \(strides)") }
                result = .floats(
                    try floats(0).conv2d(weight: try floats(1), bias: node.input.count > 2 ? try floats(2) : nil, stride: stride))
            case "Reshape":
                let x = try floats(0)
                // 0 copies the input's dimension; one -1 is inferred.
                var shape = try ints(1).enumerated().map { $1 == 0 ? x.shape[$0] : $1 }
                if let i = shape.firstIndex(of: -1) { shape[i] = x.count / shape.filter { $0 != -1 }.reduce(1, *) }
                result = .floats(x.reshape(shape))
            case "Transpose": result = .floats(try floats(0).permute(intList("perm")))
            case "Gather":
                let x = try floats(0), index = try ints(1)
                let axis = (int("axis", 0) + x.rank) % x.rank
                guard index.count == 1 else { throw Unsupported(description: "Gather with \(index.count) indices") }
                result = .floats(x.slice(axis: axis, start: index[0], length: 1).squeeze(axis))
            case "Softmax":
                let x = try floats(0)
                guard int("axis", -1) == -1 || int("axis", -1) == x.rank - 1 else {
                    throw Unsupported(description: "Softmax on an inner axis")
                }
                result = .floats(x.softmax())
            case "LayerNormalization":
                guard int("axis", -1) == -1 else { throw Unsupported(description: "LayerNormalization axis \(int("axis", -1))") }
                result = .floats(try floats(0).layerNorm(weight: try floats(1), bias: try floats(2), eps: attributes["epsilon"]?.f ?? 1e-5))
            case "Erf":
                let x = try floats(0)
                result = .floats(Tensor(x.toArray().map { Foundation.erf($0) }, shape: x.shape))
            case "Tanh": result = .floats(try floats(0).tanh())
            case "Sigmoid": result = .floats(try floats(0).sigmoid())
            case "Concat" where node.input.allSatisfy({ if case .ints = values[$0] { true } else { false } }):
                result = .ints(try node.input.indices.flatMap { try ints($0) })  // shapes
            case "Concat":
                let parts = try node.input.indices.map { try floats($0) }
                result = .floats(Tensor.concat(parts, axis: (int("axis", 0) + parts[0].rank) % parts[0].rank))
            case "Shape":
                let shape = try floats(0).shape
                result = .ints(Array(shape[int("start", 0)..<int("end", shape.count)]))
            case "Expand":
                let x = try floats(0), target = try ints(1)
                result = .floats(x.expand(to: target))
            case "Slice":
                let x = try floats(0), starts = try ints(1), ends = try ints(2), axes = try ints(3)
                var y = x
                for (axis, (start, end)) in zip(axes, zip(starts, ends)) {
                    y = y.slice(axis: axis, start: start, length: min(end, y.shape[axis]) - start)
                }
                result = .floats(y)
            case "ReduceMean":
                guard int("keepdims", 1) == 0 else { throw Unsupported(description: "ReduceMean keepdims") }
                result = .floats(try floats(0).mean(axes: intList("axes")))
            case "Identity": result = values[node.input[0]] ?? .ints([])
            default: throw Unsupported(description: "operator \(node.opType)")
            }
            guard node.output.count == 1 else { throw Unsupported(description: "\(node.opType) with \(node.output.count) outputs") }
            values[node.output[0]] = result
        }
        var outputs: [String: Tensor] = [:]
        for output in graph.output {
            guard case .floats(let t) = values[output.name] else { throw Unsupported(description: "output \(output.name) missing") }
            outputs[output.name] = t
        }
        return outputs
    }

    /// ONNX's (numpy's) broadcasting for a binary operator: a scalar as a number, else the lower rank padded with
    /// leading 1s and expanded.
    static func broadcast(_ op: String, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        func apply(_ x: Tensor, _ y: Tensor) -> Tensor { op == "Add" ? x + y : op == "Mul" ? x * y : x / y }
        if b.rank == 0 { return op == "Add" ? a + b.item() : op == "Mul" ? a * b.item() : a / b.item() }
        if a.rank == 0 { return op == "Add" ? a.item() + b : op == "Mul" ? a.item() * b : a.item() / b }
        let rank = max(a.rank, b.rank)
        let (ashape, bshape) = (Array(repeating: 1, count: rank - a.rank) + a.shape, Array(repeating: 1, count: rank - b.rank) + b.shape)
        let shape = zip(ashape, bshape).map { max($0, $1) }
        return apply(a.reshape(ashape).expand(to: shape).copy(), b.reshape(bshape).expand(to: shape).copy())
    }
}
