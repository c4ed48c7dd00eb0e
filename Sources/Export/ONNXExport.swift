import CLIP
import Foundation
import Images
import SwiftProtobuf
import ViT

/// `vit export --format onnx`: a model trained or read here, as an ONNX file that ONNX Runtime, OpenVINO and TensorRT
/// load. Opset 17, float32 weights, a symbolic batch axis; the preprocessing the model expects and its labels ride
/// along as metadata_props (`image_size`, `crop_pct`, `interpolation`, `mean`, `std`, `labels` as JSON), so a
/// deployment needs nothing else.
public enum ONNXExport {
    /// A ViT/DeiT classifier (or headless encoder) with its evaluation preprocessing and labels.
    public static func classifier(_ model: VisionTransformer, transform: EvalTransform, labels: [String]) throws -> Data {
        try serialise(model.onnxGraph().model(metadata: metadata(transform, labels: labels)))
    }

    /// CLIP's image tower: images -> embeddings.
    public static func clipImageTower(_ model: CLIPModel) throws -> Data {
        try serialise(model.imageTowerONNXGraph().model(metadata: metadata(model.transform, labels: nil)))
    }

    static func metadata(_ transform: EvalTransform, labels: [String]?) -> [String: String] {
        func list(_ values: [Float]) -> String { "[" + values.map { "\($0)" }.joined(separator: ", ") + "]" }
        var metadata = [
            "image_size": "\(transform.size)", "crop_pct": "\(transform.cropPct)", "interpolation": "\(transform.filter)",
            "mean": list(transform.mean), "std": list(transform.std)
        ]
        if let labels, let json = try? JSONSerialization.data(withJSONObject: labels) {
            metadata["labels"] = String(decoding: json, as: UTF8.self)
        }
        return metadata
    }

    static func serialise(_ model: Onnx_ModelProto) throws -> Data {
        do { return try model.serializedData() } catch { throw ExportError("the ONNX model does not serialise: \(error)") }
    }
}
