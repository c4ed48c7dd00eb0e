import Foundation
import Tensors

/// A box as DETR predicts it: centre and size, relative to the image (cx, cy, w, h in [0, 1]).
public struct Box: Equatable, Sendable {
    public var cx: Float, cy: Float, w: Float, h: Float
    public init(cx: Float, cy: Float, w: Float, h: Float) { (self.cx, self.cy, self.w, self.h) = (cx, cy, w, h) }

    /// Corners (x0, y0, x1, y1).
    public var corners: (Float, Float, Float, Float) { (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2) }

    /// Generalised IoU (Rezatofighi et al. 2019): IoU minus the part of the smallest enclosing box that neither
    /// covers, in [-1, 1] (`util/box_ops.generalized_box_iou`).
    public func generalizedIoU(_ other: Box) -> Float {
        let (a0, a1, a2, a3) = corners, (b0, b1, b2, b3) = other.corners
        let areaA = (a2 - a0) * (a3 - a1), areaB = (b2 - b0) * (b3 - b1)
        let inter = max(min(a2, b2) - max(a0, b0), 0) * max(min(a3, b3) - max(a1, b1), 0)
        let union = areaA + areaB - inter
        let enclosing = max(max(a2, b2) - min(a0, b0), 0) * max(max(a3, b3) - min(a1, b1), 0)
        return inter / union - (enclosing - union) / enclosing
    }

    /// Σ |Δ| over the four numbers (`torch.cdist(p=1)`).
    public func l1(_ other: Box) -> Float { abs(cx - other.cx) + abs(cy - other.cy) + abs(w - other.w) + abs(h - other.h) }

    /// The rows of a [N, 4] tensor as boxes.
    public static func rows(_ t: Tensor) -> [Box] {
        let v = t.toArray()
        return stride(from: 0, to: v.count - 3, by: 4).map { Box(cx: v[$0], cy: v[$0 + 1], w: v[$0 + 2], h: v[$0 + 3]) }
    }
}

/// One image's objects: class indices and boxes (cx, cy, w, h relative to the image).
public struct DetectionTarget: Sendable {
    public var labels: [Int]
    public var boxes: [Box]
    public init(labels: [Int], boxes: [Box]) { (self.labels, self.boxes) = (labels, boxes) }
}

/// DETR's Hungarian matcher (`matcher.py`): for each image, the one-to-one assignment of its objects to predictions
/// with the least total cost, cost = 5·L1(boxes) − 1·p(object's class) − 2·GIoU (`class_cost`, `bbox_cost`,
/// `giou_cost`).
public struct HungarianMatcher: Sendable {
    public var classCost: Float = 1
    public var boxCost: Float = 5
    public var giouCost: Float = 2
    public init() {}

    /// logits [B, Q, C+1], boxes [B, Q, 4] -> for each image, (query, target) pairs in increasing query order, as
    /// scipy's `linear_sum_assignment` returns them. The costs are computed in float32 in transformers' order of
    /// operations (an untrained DETR's queries can differ in cost by 1e-7, where the order of a sum decides), then
    /// solved in double precision, as scipy solves them.
    public func match(logits: Tensor, boxes: Tensor, targets: [DetectionTarget]) -> [[(query: Int, target: Int)]] {
        let (b, q, c) = (logits.shape[0], logits.shape[1], logits.shape[2])
        let probabilities = Autograd.withNoGrad { logits.softmax() }.toArray()  // [B, Q, C+1]
        let predicted = Box.rows(boxes.reshape([b * q, 4]))
        return (0..<b).map { n in
            let target = targets[n]
            guard !target.labels.isEmpty else { return [] }
            // cost[t][i]: target t matched to query i (targets are the rows: no more of them than queries).
            let cost = target.labels.indices.map { t in
                (0..<q).map { i -> Double in
                    let box = predicted[n * q + i]
                    let p = probabilities[(n * q + i) * c + target.labels[t]]
                    let c = Double(boxCost * box.l1(target.boxes[t]) - classCost * p - giouCost * box.generalizedIoU(target.boxes[t]))
                    return c.isFinite ? c : 1e18  // a diverged prediction (NaN) is matched last, not looped on
                }
            }
            let assigned = Self.minimumCostAssignment(cost)  // target -> query
            return assigned.enumerated().map { (query: $0.element, target: $0.offset) }.sorted { $0.query < $1.query }
        }
    }

    /// The minimum-cost assignment of each row to a distinct column (rows ≤ columns): the shortest augmenting path
    /// method with potentials (Kuhn-Munkres in O(rows² · columns)); among equal costs the lowest column wins, so the
    /// result is deterministic. Returns each row's column.
    public static func minimumCostAssignment(_ cost: [[Double]]) -> [Int] {
        let n = cost.count, m = cost.first?.count ?? 0
        guard n > 0, m >= n else { return [] }
        // 1-based, column 0 a virtual start: u, v the row and column potentials, owner[j] the row holding column j.
        var u = [Double](repeating: 0, count: n + 1), v = [Double](repeating: 0, count: m + 1)
        var owner = [Int](repeating: 0, count: m + 1), way = [Int](repeating: 0, count: m + 1)
        for row in 1...n {
            owner[0] = row
            var column = 0
            var slack = [Double](repeating: .infinity, count: m + 1), used = [Bool](repeating: false, count: m + 1)
            repeat {
                used[column] = true
                let i = owner[column]
                var delta = Double.infinity, next = 0
                for j in 1...m where !used[j] {
                    let reduced = cost[i - 1][j - 1] - u[i] - v[j]
                    if reduced < slack[j] { (slack[j], way[j]) = (reduced, column) }
                    if slack[j] < delta { (delta, next) = (slack[j], j) }
                }
                for j in 0...m {
                    if used[j] {
                        u[owner[j]] += delta
                        v[j] -= delta
                    } else {
                        slack[j] -= delta
                    }
                }
                column = next
            } while owner[column] != 0
            repeat {
                let previous = way[column]
                owner[column] = owner[previous]
                column = previous
            } while column != 0
        }
        var assignment = [Int](repeating: 0, count: n)
        for j in 1...m where owner[j] != 0 { assignment[owner[j] - 1] = j - 1 }
        return assignment
    }
}
