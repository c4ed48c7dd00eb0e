import Foundation
import Inference

/// The Open Inference Protocol v2's REST messages (kserve/open-inference-protocol, `inference_rest.md`), the parts
/// `vit serve` uses.
struct InferRequest: Decodable {
    struct Input: Decodable {
        var name: String
        var shape: [Int]
        var datatype: String
        /// BYTES: each image's encoded bytes in base64; UINT8, FP32: the numbers in row-major order, flat or nested.
        var data: TensorData
    }
    struct RequestedOutput: Decodable {
        var name: String
    }
    var id: String?
    var inputs: [Input]
    var outputs: [RequestedOutput]?
}

/// An input's `data`: strings (BYTES) or numbers, as the protocol allows them: flat, or nested by the shape.
enum TensorData: Decodable {
    case strings([String])
    case numbers([Double])

    init(from decoder: any Decoder) throws {
        var strings: [String] = [], numbers: [Double] = []
        func collect(_ container: inout any UnkeyedDecodingContainer) throws {
            while !container.isAtEnd {
                if let text = try? container.decode(String.self) {
                    strings.append(text)
                } else if let number = try? container.decode(Double.self) {
                    numbers.append(number)
                } else {
                    var nested = try container.nestedUnkeyedContainer()
                    try collect(&nested)
                }
            }
        }
        var container = try decoder.unkeyedContainer()
        try collect(&container)
        guard strings.isEmpty || numbers.isEmpty else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "data mixes strings and numbers"))
        }
        self = strings.isEmpty ? .numbers(numbers) : .strings(strings)
    }

    var count: Int {
        switch self {
        case .strings(let values): return values.count
        case .numbers(let values): return values.count
        }
    }
}

struct InferResponse: Encodable {
    struct Output: Encodable {
        var name: String
        var datatype: String
        var shape: [Int]
        var data: [Float]
    }
    var modelName: String
    var modelVersion: String
    var id: String?
    var outputs: [Output]

    enum CodingKeys: String, CodingKey {
        case modelName = "model_name"
        case modelVersion = "model_version"
        case id, outputs
    }
}

/// `GET /v2`.
struct ServerMetadata: Encodable {
    var name = "swiftvit"
    var version = "1"
    var extensions: [String] = []
}

/// `GET /v2/models/{name}`.
struct ModelMetadata: Encodable {
    struct Tensor: Encodable {
        var name: String
        var datatype: String
        var shape: [Int]
    }
    var name: String
    var versions = ["1"]
    var platform = "swiftvit"
    var inputs: [Tensor]
    var outputs: [Tensor]

    init(_ model: ServedModel) {
        name = model.name
        switch model.kind {
        case .classifier(let classifier):
            let classes = classifier.labels.count
            inputs = [.init(name: "image", datatype: "BYTES", shape: [-1])]
            outputs = [
                .init(name: "logits", datatype: "FP32", shape: [-1, classes]),
                .init(name: "probabilities", datatype: "FP32", shape: [-1, classes]),
                .init(name: "embedding", datatype: "FP32", shape: [-1, -1])
            ]
        case .clip(let clip):
            let width = clip.model.config.embedDim
            inputs = [.init(name: "image", datatype: "BYTES", shape: [-1]), .init(name: "text", datatype: "BYTES", shape: [-1])]
            outputs = [
                .init(name: "embedding", datatype: "FP32", shape: [-1, width]),
                .init(name: "text_embedding", datatype: "FP32", shape: [-1, width])
            ]
        }
    }
}

/// A JSON value of an answer's small objects.
enum JSONScalar: Encodable {
    case string(String)
    case bool(Bool)

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        }
    }
}

/// `/zeroshot`'s answer: as a line of `vit zeroshot --json`, without the file.
struct ZeroShotRecord: Encodable {
    struct Class: Encodable {
        let label: String
        let index: Int
        let probability: Double
    }
    let top: [Class]
}
