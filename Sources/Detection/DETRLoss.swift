import Foundation
import Tensors

/// DETR's set loss (`DetrLoss` / `SetCriterion`): each decoder layer's predictions are matched to the objects
/// (`HungarianMatcher`), then scored by cross-entropy over all queries (the unmatched ones must say "no object",
/// weighted `noObjectWeight`), and by L1 and 1 − GIoU over the matched boxes, both divided by the number of objects
/// in the batch; weighted 1, 5 and 2 and summed over the layers (the earlier ones DETR's auxiliary losses).
public struct DETRLoss: Sendable {
    public var matcher = HungarianMatcher()
    /// `eos_coef`: the weight of the "no object" class in the cross-entropy.
    public var noObjectWeight: Float = 0.1
    public var classWeight: Float = 1
    public var boxWeight: Float = 5
    public var giouWeight: Float = 2
    public init() {}

    /// One decoder layer's terms.
    public struct Terms {
        /// Scalars with their autograd history.
        public let crossEntropy: Tensor, l1: Tensor, giou: Tensor
        /// Mean over images of |predicted objects − objects| (not trained; a diagnostic).
        public let cardinalityError: Float
        /// The matching the terms used.
        public let matches: [[(query: Int, target: Int)]]
    }

    /// The weighted sum over every layer, and each layer's terms (the last decoder layer last). `matches` gives a
    /// layer's matching (by layer index) instead of the matcher's: a test's way to score against a reference's.
    public func callAsFunction(
        _ output: DETROutput, targets: [DetectionTarget], matches: [Int: [[(query: Int, target: Int)]]] = [:]
    ) -> (total: Tensor, layers: [Terms]) {
        let objects = Float(max(targets.reduce(0) { $0 + $1.labels.count }, 1))
        let layers = output.layers.enumerated().map { index, layer in
            terms(logits: layer.logits, boxes: layer.boxes, targets: targets, objects: objects, matches: matches[index])
        }
        var total: Tensor?
        for t in layers {
            let weighted = t.crossEntropy * classWeight + t.l1 * boxWeight + t.giou * giouWeight
            total = total.map { $0 + weighted } ?? weighted
        }
        return (total ?? Tensor(scalar: 0), layers)
    }

    /// logits [B, Q, C+1], boxes [B, Q, 4] against the targets.
    func terms(
        logits: Tensor, boxes: Tensor, targets: [DetectionTarget], objects: Float, matches given: [[(query: Int, target: Int)]]?
    ) -> Terms {
        let (b, q, c) = (logits.shape[0], logits.shape[1], logits.shape[2])
        let matches = given ?? matcher.match(logits: logits, boxes: boxes, targets: targets)
        // Every query's class: its object's, or "no object" (the last).
        var classes = [Int](repeating: c - 1, count: b * q)
        var matchedQueries: [Int] = [], matchedBoxes: [Box] = []
        for (n, pairs) in matches.enumerated() {
            for (query, target) in pairs {
                classes[n * q + query] = targets[n].labels[target]
                matchedQueries.append(n * q + query)
                matchedBoxes.append(targets[n].boxes[target])
            }
        }
        let weights = classes.map { $0 == c - 1 ? noObjectWeight : 1 }
        let logProbabilities = logits.logSoftmax().reshape([b * q, c]).gather(axis: 1, classes.map { [$0] })  // [B·Q, 1]
        let crossEntropy = (logProbabilities * Tensor(weights, shape: [b * q, 1])).sum() * (-1 / weights.reduce(0, +))

        let l1: Tensor, giou: Tensor
        if matchedQueries.isEmpty {
            (l1, giou) = ((boxes * 0).sum(), (boxes * 0).sum())  // no objects: zero, still connected to the graph
        } else {
            let predicted = boxes.reshape([b * q, 4]).indexSelect(axis: 0, matchedQueries)  // [M, 4]
            let target = Tensor(matchedBoxes.flatMap { [$0.cx, $0.cy, $0.w, $0.h] }, shape: [matchedBoxes.count, 4])
            l1 = (predicted - target).apply(.abs).sum() / objects
            giou = (Float(matchedBoxes.count) - Self.generalizedIoU(predicted, target).sum()) / objects
        }

        // Predicted objects per image: the queries whose most likely class is not "no object".
        let predictedClasses = logits.argmax(axis: -1)
        let errors = (0..<b).map { n in
            Float(abs((0..<q).filter { predictedClasses[n * q + $0] != c - 1 }.count - targets[n].labels.count))
        }
        return Terms(crossEntropy: crossEntropy, l1: l1, giou: giou, cardinalityError: errors.reduce(0, +) / Float(b), matches: matches)
    }

    /// The generalised IoU of each row of a [M, 4] with the same row of b [M, 4] (cx, cy, w, h) -> [M, 1],
    /// differentiable in both: max(x, y) = y + relu(x − y), min(x, y) = x − relu(x − y), clamps at 0 are ReLUs.
    static func generalizedIoU(_ a: Tensor, _ b: Tensor) -> Tensor {
        func corners(_ t: Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
            let (cx, cy) = (t.slice(axis: 1, start: 0, length: 1), t.slice(axis: 1, start: 1, length: 1))
            let (w, h) = (t.slice(axis: 1, start: 2, length: 1) * 0.5, t.slice(axis: 1, start: 3, length: 1) * 0.5)
            return (cx - w, cy - h, cx + w, cy + h)  // [M, 1] each
        }
        func maximum(_ x: Tensor, _ y: Tensor) -> Tensor { y + (x - y).relu() }
        func minimum(_ x: Tensor, _ y: Tensor) -> Tensor { x - (x - y).relu() }
        let (a0, a1, a2, a3) = corners(a), (b0, b1, b2, b3) = corners(b)
        let areaA = (a2 - a0) * (a3 - a1), areaB = (b2 - b0) * (b3 - b1)
        let inter = (minimum(a2, b2) - maximum(a0, b0)).relu() * (minimum(a3, b3) - maximum(a1, b1)).relu()
        let union = areaA + areaB - inter
        let enclosing = (maximum(a2, b2) - minimum(a0, b0)).relu() * (maximum(a3, b3) - minimum(a1, b1)).relu()
        return inter / union - (enclosing - union) / enclosing
    }
}
