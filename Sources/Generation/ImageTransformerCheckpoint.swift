import Checkpoints
import Foundation
import NN
import Tensors

/// An Image Transformer's folder: `config.json` (`"model_type": "image_transformer"` and the configuration's fields)
/// and `model.safetensors` with the module's parameter names. (tensor2tensor's checkpoints are TensorFlow's; none is
/// read here.)
public enum ImageTransformerCheckpoint {
    public static let modelType = "image_transformer"

    public static func save(_ model: ImageTransformer, to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var object = try JSONSerialization.jsonObject(with: encoder.encode(model.config)) as? [String: Any] ?? [:]
        object["model_type"] = modelType
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]),
            to: folder.appendingPathComponent("config.json"))
        try Safetensors.write(
            model.stateDict(), metadata: ["format": "pt", "producer": "SwiftViT"], to: folder.appendingPathComponent("model.safetensors"))
    }

    /// Whether `folder` holds an Image Transformer (its config says so).
    public static func holdsModel(_ folder: URL) -> Bool {
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("config.json")),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return false }
        return object["model_type"] as? String == modelType
    }

    /// The model in `folder`; every problem is an error naming the file.
    public static func load(_ folder: URL) throws -> ImageTransformer {
        let configURL = folder.appendingPathComponent("config.json")
        guard let data = try? Data(contentsOf: configURL) else {
            throw FileError(configURL, "no such file (an Image Transformer folder needs it)")
        }
        let config: ImageTransformerConfig
        do { config = try JSONDecoder().decode(ImageTransformerConfig.self, from: data) } catch {
            throw FileError(configURL, "is not an Image Transformer configuration: \(error)")
        }
        let model: ImageTransformer
        do { model = try Init.withoutDrawing { try ImageTransformer(config) } } catch { throw FileError(configURL, "\(error)") }
        let weights = folder.appendingPathComponent("model.safetensors")
        let file = try SafetensorsFile(contentsOf: weights)
        var state: [String: Tensor] = [:]
        for (name, _) in model.namedParameters() { state[name] = try file.tensor(name) }
        do { try model.load(stateDict: state) } catch { throw FileError(weights, "\(error)") }
        model.eval()
        return model
    }
}
