import ArgumentParser
import CLIP
import Export
import Foundation
import Inference
import Tensors
import ViT

/// A model as a file other runtimes load.
struct ExportModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract:
            "Export a ViT/DeiT classifier or CLIP's image tower to ONNX (opset 17, dynamic batch), for ONNX Runtime, OpenVINO or TensorRT.",
        discussion: """
            The graph takes image [batch, 3, S, S], normalised as the model expects, and gives logits [batch, classes] \
            (a distilled DeiT's heads averaged, as vit predict), features [batch, D] for a model without a head, or \
            CLIP's embedding [batch, E]. The preprocessing (image_size, crop_pct, interpolation, mean, std) and the \
            labels are in the file's metadata_props. Weights are float32 whatever the model was trained in.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case onnx
    }

    @Option(help: "The file format.") var format: Format = .onnx
    @Argument(help: "Checkpoint folder or weights file (as vit predict's --model), builtin:cifar10-vit, or a CLIP folder.")
    var input: String
    @Option(name: .shortAndLong, help: "The file to write (model.onnx).") var output: String
    @OptionGroup var architecture: ArchitectureOptions

    func run() throws {
        do { try export() } catch let error as ExportError { throw CommandFailure("\(input): \(error)") }
    }

    func export() throws {
        let source = try BuiltInModel.resolve(input)
        let data: Data
        let said: String
        if CLIPModel.isCLIPFolder(source) {
            let clip = try CLIPModel.load(source)
            data = try ONNXExport.clipImageTower(clip)
            said =
                "CLIP's image tower, image [batch, 3, \(clip.config.imageSize), \(clip.config.imageSize)] -> embedding [batch, \(clip.config.embedDim)]"
        } else {
            let classifier = Classifier(model: try architecture.loader.loadModel(source))
            guard let vit = classifier.vit else {
                throw CommandFailure(
                    "\(input): ONNX export covers ViT/DeiT classifiers and CLIP's image tower; this is a convolutional network")
            }
            data = try ONNXExport.classifier(vit, transform: classifier.transform, labels: classifier.labels)
            let c = vit.config
            said =
                "image [batch, \(c.channels), \(c.imageSize), \(c.imageSize)] -> "
                + (vit.head == nil ? "features" : "logits [batch, \(c.numClasses)]")
        }
        // Through a temporary name and a rename: an interrupted export never leaves half a file under its name.
        try AtomicFile.write(data, to: URL(fileURLWithPath: output))
        print("wrote \(output): ONNX opset 17, \(said), \(data.count / 1_048_576) MiB")
    }
}
