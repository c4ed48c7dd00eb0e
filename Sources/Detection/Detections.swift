import Foundation
import Tensors

/// One detected object: its class, score and box in the image's own pixels.
public struct Detection: Equatable, Sendable {
    public var label: Int
    public var score: Float
    /// x0, y0, x1, y1 in pixels of the image as given (before resizing and padding).
    public var box: (x0: Float, y0: Float, x1: Float, y1: Float)

    public static func == (a: Detection, b: Detection) -> Bool {
        a.label == b.label && a.score == b.score && a.box == b.box
    }
}

extension DETROutput {
    /// DETR's post-processing (`post_process_object_detection`): each query's most likely class other than "no
    /// object" and that class's probability, its box scaled to `sizes` (each image's height and width in pixels),
    /// in query order, keeping those scoring above `threshold`.
    public func detections(sizes: [(height: Int, width: Int)], threshold: Float = 0.5) -> [[Detection]] {
        let (b, q, c) = (logits.shape[0], logits.shape[1], logits.shape[2])
        let probabilities = Autograd.withNoGrad { logits.softmax() }.toArray()  // [B, Q, C+1]
        let predicted = Box.rows(boxes.reshape([b * q, 4]))
        return (0..<b).map { n in
            let (height, width) = (Float(sizes[n].height), Float(sizes[n].width))
            return (0..<q).compactMap { i -> Detection? in
                let row = probabilities[((n * q + i) * c)..<((n * q + i) * c + c - 1)]
                guard let best = row.indices.max(by: { row[$0] < row[$1] }), row[best] > threshold else { return nil }
                let (x0, y0, x1, y1) = predicted[n * q + i].corners
                return Detection(
                    label: best - (n * q + i) * c, score: row[best], box: (x0 * width, y0 * height, x1 * width, y1 * height))
            }
        }
    }
}
