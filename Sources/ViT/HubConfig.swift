import Checkpoints
import Foundation

/// A JSON value: what a configuration file holds under a key this project does not know, kept as it was so that a
/// file read and written again loses nothing. Numbers keep their kind (an integer stays one; a `Float` written by
/// SwiftViT prints as the shortest decimal that reads back as it).
public enum JSONValue: Codable, Equatable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int)
    case float(Float)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let v = try? c.decode(Bool.self) {
            self = .bool(v)
        } else if let v = try? c.decode(Int.self) {
            self = .int(v)
        } else if let v = try? c.decode(Double.self) {
            self = .double(v)
        } else if let v = try? c.decode(String.self) {
            self = .string(v)
        } else if let v = try? c.decode([JSONValue].self) {
            self = .array(v)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let v): try c.encode(v)
        case .int(let v): try c.encode(v)
        case .float(let v): try c.encode(v)
        case .double(let v): try c.encode(v)
        case .string(let v): try c.encode(v)
        case .array(let v): try c.encode(v)
        case .object(let v): try c.encode(v)
        }
    }

    /// Equal values, numbers by value: a `Float` written (2.0, 0.247) equals the number read back from the file (2,
    /// 0.247), compared at Float precision when either side is a Float.
    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)): return x == y
        default:
            guard let x = a.double, let y = b.double else { return false }
            if case .float = a { return Float(x) == Float(y) }
            if case .float = b { return Float(x) == Float(y) }
            return x == y
        }
    }

    /// The value as JSON text (what an error message quotes).
    public var description: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "?"
    }

    public var bool: Bool? { if case .bool(let v) = self { return v } else { return nil } }
    public var string: String? { if case .string(let v) = self { return v } else { return nil } }
    public var array: [JSONValue]? { if case .array(let v) = self { return v } else { return nil } }
    public var object: [String: JSONValue]? { if case .object(let v) = self { return v } else { return nil } }
    /// A number as a Double (an integer too).
    public var double: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .float(let v): return Double(v)
        case .double(let v): return v
        default: return nil
        }
    }
    /// An integer, or a number with no fractional part that fits one.
    public var int: Int? {
        if case .int(let v) = self { return v }
        guard let d = double, d.rounded() == d, abs(d) < 9e15 else { return nil }
        return Int(d)
    }
    public var float: Float? { double.map(Float.init) }
    /// Numbers only, or nil.
    public var numbers: [Double]? {
        guard let array else { return nil }
        let values = array.compactMap(\.double)
        return values.count == array.count ? values : nil
    }

    public init(_ values: [Int]) { self = .array(values.map(JSONValue.int)) }
    public init(_ values: [Float]) { self = .array(values.map(JSONValue.float)) }
    public init(_ values: [String]) { self = .array(values.map(JSONValue.string)) }
}

/// The `config.json` of timm's hub layout, as SwiftViT writes it beside every model it saves (ViT and ResNet alike)
/// and reads it beside published weights: `architecture`, `num_classes`, `global_pool`, `model_args` (the shape, as
/// `timm.create_model(architecture, **model_args)` takes it), `pretrained_cfg` (the data config), `label_names`, and
/// SwiftViT's own full configuration (`swiftvit` for a ViT, `swiftvit_resnet` for a ResNet). One typed value: the
/// known keys through typed properties, every key (known or not) kept in `json`, so a file read and written again
/// keeps what this project does not know.
public struct HubConfig: Codable, Equatable, Sendable {
    /// Every key of the file.
    public var json: [String: JSONValue]

    public init(json: [String: JSONValue] = [:]) { self.json = json }

    public init(from decoder: any Decoder) throws { json = try [String: JSONValue](from: decoder) }
    public func encode(to encoder: any Encoder) throws { try json.encode(to: encoder) }

    /// Reads `url`: one JSON object, or a `ConfigError` naming the file.
    public static func read(_ url: URL) throws -> HubConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw ConfigError("\(url.path): cannot be read (\(error.localizedDescription))") }
        do {
            return try JSONDecoder().decode(HubConfig.self, from: data)
        } catch {
            guard (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil else {
                throw ConfigError("\(url.path): cannot be read as JSON")
            }
            throw ConfigError("\(url.path): not a JSON object")
        }
    }

    /// The file's bytes: keys sorted, indented (as timm's hub files are).
    public func data() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// A section of the file (`model_args`, `pretrained_cfg`), read and written as one.
    public struct Section: Equatable, Sendable {
        public var json: [String: JSONValue]
        public init(_ json: [String: JSONValue] = [:]) { self.json = json }
        public subscript(key: String) -> JSONValue? {
            get { json[key] }
            set { json[key] = newValue }
        }
    }

    public subscript(key: String) -> JSONValue? {
        get { json[key] }
        set { json[key] = newValue }
    }

    public var architecture: String? {
        get { json["architecture"]?.string }
        set { json["architecture"] = newValue.map(JSONValue.string) }
    }
    public var numClasses: Int? {
        get { json["num_classes"]?.int }
        set { json["num_classes"] = newValue.map(JSONValue.int) }
    }
    public var globalPool: String? {
        get { json["global_pool"]?.string }
        set { json["global_pool"] = newValue.map(JSONValue.string) }
    }
    public var labelNames: [String]? {
        get { json["label_names"]?.array?.compactMap(\.string) }
        set { json["label_names"] = newValue.map(JSONValue.init) }
    }
    /// The model's shape as timm's constructor takes it (absent: an empty section).
    public var modelArgs: Section {
        get { Section(json["model_args"]?.object ?? [:]) }
        set { json["model_args"] = .object(newValue.json) }
    }
    /// The data config (input size, mean, std, crop, interpolation) and the classifier's names.
    public var pretrainedConfig: Section {
        get { Section(json["pretrained_cfg"]?.object ?? [:]) }
        set { json["pretrained_cfg"] = .object(newValue.json) }
    }

    /// SwiftViT's own full configuration saved under `key` (`swiftvit`, `swiftvit_resnet`), if the file has one that
    /// decodes as `T`.
    public func native<T: Decodable>(_ key: String, as type: T.Type) -> T? {
        guard let value = json[key], let data = try? JSONEncoder().encode(value) else { return nil }
        return try? JSONDecoder().decode(T.self, from: data)
    }

    /// Saves `value` under `key` as SwiftViT's own configuration.
    public mutating func setNative<T: Encodable>(_ key: String, _ value: T) throws {
        json[key] = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
    }

    /// The data config of `pretrained_cfg`, as timm writes it.
    public mutating func setDataConfig(_ data: DataConfig, numClasses: Int, firstConv: String, classifier: String) {
        var cfg = pretrainedConfig
        cfg["input_size"] = JSONValue(data.inputSize)
        cfg["mean"] = JSONValue(data.mean)
        cfg["std"] = JSONValue(data.std)
        cfg["crop_pct"] = .float(data.cropPct)
        cfg["crop_mode"] = .string("center")
        cfg["interpolation"] = .string(data.interpolation.rawValue)
        cfg["num_classes"] = .int(numClasses)
        cfg["first_conv"] = .string(firstConv)
        cfg["classifier"] = .string(classifier)
        pretrainedConfig = cfg
    }
}
