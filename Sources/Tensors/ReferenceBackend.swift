import Foundation

/// Every kernel of `Backend` as the plainest loops over the values, computed in float (double for the updates and
/// sums), then stored in the output's dtype. Slow on purpose: it is what the fast kernels are tested against (as
/// llm.c keeps a CPU reference beside each CUDA kernel), and what a new backend is checked with first.
public final class ReferenceBackend: Backend {
    public init() {}

    // MARK: - Helpers

    /// A tensor of `dtype` holding `values` (rounded to the dtype).
    func make(_ shape: [Int], _ dtype: DType, _ values: [Float]) -> Tensor {
        let out = Tensor(uninitializedShape: shape, dtype: dtype)
        store(values, into: out)
        return out
    }

    func store(_ values: [Float], into out: Tensor) {
        precondition(values.count == out.count, "\(values.count) values for \(out.shape)")
        switch out.dtype {
        case .float32: for (i, v) in values.enumerated() { out.pointer[i] = v }
        case .bfloat16:
            let bits = out.raw.assumingMemoryBound(to: UInt16.self)
            for (i, v) in values.enumerated() { bits[i] = BFloat16.bits(v) }
        }
    }

    /// Row-major multi-index of a flat index, and back, for broadcasting.
    func index(_ flat: Int, _ shape: [Int]) -> [Int] {
        var rest = flat
        var out = [Int](repeating: 0, count: shape.count)
        for axis in shape.indices.reversed() {
            out[axis] = shape[axis] == 0 ? 0 : rest % shape[axis]
            rest /= Swift.max(shape[axis], 1)
        }
        return out
    }

    func flat(_ index: [Int], _ shape: [Int]) -> Int {
        zip(index, shape).reduce(0) { $0 * $1.1 + ($1.1 == 1 ? 0 : $1.0) }
    }

    static func apply(_ op: UnaryOp, _ x: Float) -> Float {
        switch op {
        case .exp: return Foundation.exp(x)
        case .log: return Foundation.log(x)
        case .sqrt: return x.squareRoot()
        case .tanh: return Foundation.tanh(x)
        case .relu: return Swift.max(x, 0)
        case .sigmoid: return 1 / (1 + Foundation.exp(-x))
        case .abs: return Swift.abs(x)
        case .square: return x * x
        case .geluErf: return 0.5 * x * (1 + erf(x / 2.0.squareRoot().float))
        case .geluTanh:
            return 0.5 * x * (1 + Foundation.tanh((2 / Float.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        case let .affine(scale, shift): return scale * x + shift
        case let .power(scale, exponent): return scale * Foundation.pow(x, exponent)
        }
    }

    static func derivative(_ op: UnaryOp, _ x: Float) -> Float {
        switch op {
        case .exp: return Foundation.exp(x)
        case .log: return 1 / x
        case .sqrt: return 0.5 / x.squareRoot()
        case .tanh: let t = Foundation.tanh(x); return 1 - t * t
        case .relu: return x > 0 ? 1 : 0
        case .sigmoid: let s = 1 / (1 + Foundation.exp(-x)); return s * (1 - s)
        case .abs: return x > 0 ? 1 : (x < 0 ? -1 : 0)
        case .square: return 2 * x
        case .geluErf:
            let cdf = 0.5 * (1 + erf(x / 2.0.squareRoot().float))
            return cdf + x * Foundation.exp(-0.5 * x * x) / (2 * Float.pi).squareRoot()
        case .geluTanh:
            let k = (2 / Float.pi).squareRoot(), inner = k * (x + 0.044715 * x * x * x)
            let t = Foundation.tanh(inner)
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
        case let .affine(scale, _): return scale
        case let .power(scale, exponent): return scale * exponent * Foundation.pow(x, exponent - 1)
        }
    }

    // MARK: - Backend

    public func matmul(
        _ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?, activation: UnaryOp?
    ) -> Tensor {
        if let quantized = DynamicQuantization.applies(a, b, transposeA: transposeA, transposeB: transposeB, bias: bias) {
            return quantizedProduct(a, quantized, bias: bias, activation: activation)
                ?? productWithoutQuantization(a, b, quantized, bias: bias, activation: activation)
        }
        let rank = Swift.max(a.rank, b.rank)
        let aShape = Shape.padded(a.shape, to: rank), bShape = Shape.padded(b.shape, to: rank)
        let m = transposeA ? aShape[rank - 1] : aShape[rank - 2], k = transposeA ? aShape[rank - 2] : aShape[rank - 1]
        let n = transposeB ? bShape[rank - 2] : bShape[rank - 1]
        let batch = Shape.broadcast(Array(aShape.dropLast(2)), Array(bShape.dropLast(2)))
        let av = a.toArray(), bv = b.toArray(), biasValues = bias?.toArray()
        let batches = batch.reduce(1, *)
        var out = [Float](repeating: 0, count: batches * m * n)
        for p in 0..<batches {
            let position = index(p, batch)
            let aBase = flat(position, Array(aShape.dropLast(2))) * aShape[rank - 2] * aShape[rank - 1]
            let bBase = flat(position, Array(bShape.dropLast(2))) * bShape[rank - 2] * bShape[rank - 1]
            for i in 0..<m {
                for j in 0..<n {
                    var sum: Float = 0
                    for l in 0..<k {
                        let x = av[aBase + (transposeA ? l * m + i : i * k + l)]
                        let y = bv[bBase + (transposeB ? j * k + l : l * n + j)]
                        sum += x * y
                    }
                    if let biasValues { sum += biasValues[j] }
                    out[(p * m + i) * n + j] = activation.map { Self.apply($0, sum) } ?? sum
                }
            }
        }
        return make(batch + [m, n], a.dtype, out)
    }

    /// The int8 product of `QuantizedWeight`, written out: a [S, ..., K] · bᵀ with each sample (entry of the first
    /// axis) rounded as the CPU backend rounds it; nil when a holds a value that is not finite.
    private func quantizedProduct(_ a: Tensor, _ weight: QuantizedWeight, bias: Tensor?, activation: UnaryOp?) -> Tensor? {
        let (k, n) = (weight.inFeatures, weight.outFeatures), m = a.count / k
        let av = a.toArray(), biasValues = bias?.toArray()
        let samples = a.shape[0], rowsPerSample = m / samples
        var scales: [Float] = [], qa: [Int32] = []
        for sample in 0..<samples {
            let values = av[(sample * rowsPerSample * k)..<((sample + 1) * rowsPerSample * k)]
            var largest: Float = 0
            for x in values {
                guard x.isFinite else { return nil }
                largest = Swift.max(largest, Swift.abs(x))
            }
            guard let (scale, inverse) = DynamicQuantization.scale(absMax: largest) else { return nil }
            scales.append(scale)
            qa += values.map { Int32(($0 * inverse).rounded(.toNearestOrEven)) }
        }
        var out = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum: Int32 = 0
                for l in 0..<k { sum += qa[i * k + l] * Int32(weight.values[j * k + l]) }
                var y = Float(sum) * weight.scales[j] * scales[i / rowsPerSample]
                if let biasValues { y += biasValues[j] }
                out[i * n + j] = activation.map { Self.apply($0, y) } ?? y
            }
        }
        return make(Array(a.shape.dropLast()) + [n], weight.outputDType, out)
    }

    public func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
        let shape = Shape.broadcast(a.shape, b.shape)
        let aShape = Shape.padded(a.shape, to: shape.count), bShape = Shape.padded(b.shape, to: shape.count)
        let av = a.toArray(), bv = b.toArray()
        let out = (0..<Shape.count(shape)).map { i -> Float in
            let position = index(i, shape)
            let x = av[flat(position, aShape)], y = bv[flat(position, bShape)]
            switch op {
            case .add: return x + y
            case .sub: return x - y
            case .mul: return x * y
            case .div: return x / y
            case .max: return Swift.max(x, y)
            case .min: return Swift.min(x, y)
            }
        }
        return make(shape, Autocast.promoted(a.dtype, b.dtype), out)
    }

    public func unary(_ op: UnaryOp, _ x: Tensor) -> Tensor {
        make(x.shape, x.dtype, x.toArray().map { Self.apply(op, $0) })
    }

    public func unaryBackward(_ op: UnaryOp, gradOutput: Tensor, input: Tensor) -> Tensor {
        make(input.shape, input.dtype, zip(gradOutput.toArray(), input.toArray()).map { $0 * Self.derivative(op, $1) })
    }

    public func softmax(_ x: Tensor, log: Bool) -> Tensor {
        let columns = x.shape.last ?? 1, values = x.toArray()
        var out = values
        for start in stride(from: 0, to: values.count, by: Swift.max(columns, 1)) {
            let row = values[start..<(start + columns)]
            let top = row.max() ?? 0
            let total = row.reduce(Float(0)) { $0 + Foundation.exp($1 - top) }
            for j in 0..<columns {
                out[start + j] = log ? values[start + j] - top - Foundation.log(total) : Foundation.exp(values[start + j] - top) / total
            }
        }
        return make(x.shape, x.dtype, out)
    }

    public func softmaxBackward(gradOutput: Tensor, output: Tensor, log: Bool) -> Tensor {
        let columns = output.shape.last ?? 1, g = gradOutput.toArray(), y = output.toArray()
        var out = g
        for start in stride(from: 0, to: y.count, by: Swift.max(columns, 1)) {
            let range = start..<(start + columns)
            if log {
                let total = range.reduce(Float(0)) { $0 + g[$1] }
                for i in range { out[i] = g[i] - Foundation.exp(y[i]) * total }
            } else {
                let dot = range.reduce(Float(0)) { $0 + g[$1] * y[$1] }
                for i in range { out[i] = y[i] * (g[i] - dot) }
            }
        }
        return make(output.shape, output.dtype, out)
    }

    public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float)
        -> (output: Tensor, mean: Tensor, variance: Tensor)
    {
        let columns = x.shape[x.rank - 1], rows = x.count / columns, v = x.toArray()
        let w = weight?.toArray(), b = bias?.toArray()
        var out = v, means = [Float](repeating: 0, count: rows), variances = means
        for r in 0..<rows {
            let row = v[(r * columns)..<((r + 1) * columns)]
            let mean = row.reduce(0, +) / Float(columns)
            let variance = row.reduce(Float(0)) { $0 + ($1 - mean) * ($1 - mean) } / Float(columns)
            (means[r], variances[r]) = (mean, variance)
            for j in 0..<columns {
                let normalised = (v[r * columns + j] - mean) / (variance + eps).squareRoot()
                out[r * columns + j] = normalised * (w?[j] ?? 1) + (b?[j] ?? 0)
            }
        }
        return (make(x.shape, x.dtype, out), make([rows], .float32, means), make([rows], .float32, variances))
    }

    public func layerNormBackward(
        gradOutput: Tensor, input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, eps: Float
    ) -> (input: Tensor, weight: Tensor?, bias: Tensor?) {
        let columns = input.shape[input.rank - 1], rows = input.count / columns
        let x = input.toArray(), g = gradOutput.toArray(), means = mean.toArray(), variances = variance.toArray()
        let w = weight?.toArray()
        var dx = x, dw = [Float](repeating: 0, count: columns), db = dw
        for r in 0..<rows {
            let inverse = 1 / (variances[r] + eps).squareRoot()
            var sumG: Float = 0, sumGX: Float = 0
            for j in 0..<columns {
                let normalised = (x[r * columns + j] - means[r]) * inverse
                let gn = g[r * columns + j] * (w?[j] ?? 1)
                sumG += gn
                sumGX += gn * normalised
                dw[j] += g[r * columns + j] * normalised
                db[j] += g[r * columns + j]
            }
            for j in 0..<columns {
                let normalised = (x[r * columns + j] - means[r]) * inverse
                let gn = g[r * columns + j] * (w?[j] ?? 1)
                dx[r * columns + j] = inverse * (gn - sumG / Float(columns) - normalised * sumGX / Float(columns))
            }
        }
        return (
            make(input.shape, input.dtype, dx), weight.map { make($0.shape, $0.dtype, dw) },
            bias.map { make($0.shape, $0.dtype, db) }
        )
    }

    public func expand(_ x: Tensor, to shape: [Int], scale: Float) -> Tensor {
        let v = x.toArray()
        return make(shape, x.dtype, (0..<Shape.count(shape)).map { v[flat(index($0, shape), x.shape)] * scale })
    }

    public func reduce(_ op: ReduceOp, _ x: Tensor, to shape: [Int]) -> Tensor {
        let v = x.toArray()
        var groups = [[Float]](repeating: [], count: Shape.count(shape))
        for i in 0..<v.count { groups[flat(index(i, x.shape), shape)].append(v[i]) }
        let out = groups.map { group -> Float in
            switch op {
            case .sum: return group.reduce(0, +)
            case .mean: return group.reduce(0, +) / Float(Swift.max(group.count, 1))
            case .max: return group.max() ?? 0
            case .min: return group.min() ?? 0
            }
        }
        return make(shape, x.dtype, out)
    }

    public func argmax(_ x: Tensor, axis: Int) -> [Int] {
        let (outer, n, inner) = x.split(at: axis), v = x.toArray()
        return (0..<(outer * inner)).map { p in
            let (o, i) = (p / inner, p % inner)
            var best = 0  // the first of equal maxima, as NumPy and PyTorch
            for j in 1..<n where v[(o * n + j) * inner + i] > v[(o * n + best) * inner + i] { best = j }
            return best
        }
    }

    public func permute(_ x: Tensor, _ axes: [Int]) -> Tensor {
        let shape = axes.map { x.shape[$0] }, v = x.toArray()
        let out = (0..<v.count).map { i -> Float in
            let position = index(i, shape)
            var source = [Int](repeating: 0, count: axes.count)
            for (outAxis, inAxis) in axes.enumerated() { source[inAxis] = position[outAxis] }
            return v[source.enumerated().reduce(0) { $0 * x.shape[$1.offset] + $1.element }]
        }
        return make(shape, x.dtype, out)
    }

    public func concat(_ xs: [Tensor], axis: Int) -> Tensor {
        var shape = xs[0].shape
        shape[axis] = xs.reduce(0) { $0 + $1.shape[axis] }
        var out = [Float](repeating: 0, count: Shape.count(shape))
        var start = 0
        for x in xs {
            let v = x.toArray()
            for i in 0..<v.count {
                var position = index(i, x.shape)
                position[axis] += start
                out[position.enumerated().reduce(0) { $0 * shape[$1.offset] + $1.element }] = v[i]
            }
            start += x.shape[axis]
        }
        return make(shape, xs[0].dtype, out)
    }

    public func slice(_ x: Tensor, axis: Int, start: Int, length: Int) -> Tensor {
        var shape = x.shape
        shape[axis] = length
        let v = x.toArray()
        let out = (0..<Shape.count(shape)).map { i -> Float in
            var position = index(i, shape)
            position[axis] += start
            return v[position.enumerated().reduce(0) { $0 * x.shape[$1.offset] + $1.element }]
        }
        return make(shape, x.dtype, out)
    }

    public func unslice(_ x: Tensor, shape: [Int], axis: Int, start: Int) -> Tensor {
        var out = [Float](repeating: 0, count: Shape.count(shape))
        let v = x.toArray()
        for i in 0..<v.count {
            var position = index(i, x.shape)
            position[axis] += start
            out[position.enumerated().reduce(0) { $0 * shape[$1.offset] + $1.element }] = v[i]
        }
        return make(shape, x.dtype, out)
    }

    public func gather(_ x: Tensor, axis: Int, indices: [[Int]]) -> Tensor {
        let (outer, n, inner) = x.split(at: axis), v = x.toArray()
        let k = indices[0].count
        var shape = x.shape
        shape[axis] = k
        var out: [Float] = []
        for o in 0..<outer {
            for j in indices[indices.count == 1 ? 0 : o] { out += v[((o * n + j) * inner)..<((o * n + j + 1) * inner)] }
        }
        precondition(out.count == outer * k * inner, "gather index lists differ in length")
        return make(shape, x.dtype, out)
    }

    public func scatterAdd(_ x: Tensor, shape: [Int], axis: Int, indices: [[Int]]) -> Tensor {
        let (outer, k, inner) = x.split(at: axis), n = shape[axis], v = x.toArray()
        var out = [Float](repeating: 0, count: Shape.count(shape))
        for o in 0..<outer {
            for (j, index) in indices[indices.count == 1 ? 0 : o].enumerated() {
                for i in 0..<inner { out[(o * n + index) * inner + i] += v[(o * k + j) * inner + i] }
            }
        }
        return make(shape, x.dtype, out)
    }

    public func attention(qkv: Tensor, heads: Int, scale: Float) -> (output: Tensor, probabilities: Tensor) {
        let (b, n, d) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3), hd = d / heads, x = qkv.toArray()
        // q, k or v of image i, head h, token t, channel c.
        func at(_ part: Int, _ i: Int, _ h: Int, _ t: Int, _ c: Int) -> Float { x[(i * n + t) * 3 * d + part * d + h * hd + c] }
        var probabilities = [Float](repeating: 0, count: b * heads * n * n)
        var out = [Float](repeating: 0, count: b * n * d)
        for i in 0..<b {
            for h in 0..<heads {
                for t in 0..<n {
                    let row = ((i * heads + h) * n + t) * n
                    var scores = (0..<n).map { s in (0..<hd).reduce(Float(0)) { $0 + at(0, i, h, t, $1) * at(1, i, h, s, $1) } * scale }
                    let top = scores.max() ?? 0
                    scores = scores.map { Foundation.exp($0 - top) }
                    let total = scores.reduce(0, +)
                    for s in 0..<n { probabilities[row + s] = scores[s] / total }
                    for c in 0..<hd {
                        out[(i * n + t) * d + h * hd + c] = (0..<n).reduce(Float(0)) { $0 + probabilities[row + $1] * at(2, i, h, $1, c) }
                    }
                }
            }
        }
        return (make([b, n, d], qkv.dtype, out), make([b, heads, n, n], qkv.dtype, probabilities))
    }

    public func attentionBackward(gradOutput: Tensor, qkv: Tensor, probabilities: Tensor, heads: Int, scale: Float) -> Tensor {
        let (b, n, d) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3), hd = d / heads
        let x = qkv.toArray(), p = probabilities.toArray(), g = gradOutput.toArray()
        func index(_ part: Int, _ i: Int, _ h: Int, _ t: Int, _ c: Int) -> Int { (i * n + t) * 3 * d + part * d + h * hd + c }
        var grad = [Float](repeating: 0, count: x.count)
        for i in 0..<b {
            for h in 0..<heads {
                let base = (i * heads + h) * n * n
                func gOut(_ t: Int, _ c: Int) -> Float { g[(i * n + t) * d + h * hd + c] }
                for t in 0..<n {
                    // d(probabilities) row t, then through the softmax: dS = P ⊙ (dP - Σ P·dP), times the scale.
                    let dP = (0..<n).map { s in (0..<hd).reduce(Float(0)) { $0 + gOut(t, $1) * x[index(2, i, h, s, $1)] } }
                    let dot = (0..<n).reduce(Float(0)) { $0 + p[base + t * n + $1] * dP[$1] }
                    for s in 0..<n {
                        let dS = p[base + t * n + s] * (dP[s] - dot) * scale
                        for c in 0..<hd {
                            grad[index(0, i, h, t, c)] += dS * x[index(1, i, h, s, c)]  // dq
                            grad[index(1, i, h, s, c)] += dS * x[index(0, i, h, t, c)]  // dk
                            grad[index(2, i, h, s, c)] += p[base + t * n + s] * gOut(t, c)  // dv
                        }
                    }
                }
            }
        }
        return make(qkv.shape, qkv.dtype, grad)
    }

    public func cast(_ source: Tensor, into destination: Tensor) {
        destination.thaw()
        store(source.toArray(), into: destination)
    }

    public func fill(_ x: Tensor, _ value: Float) {
        x.thaw()
        store([Float](repeating: value, count: x.count), into: x)
    }

    public func adamUpdate(_ parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor, _ u: AdamUpdate) {
        parameter.thaw()
        var w = parameter.toArray().map(Double.init), m = firstMoment.toArray().map(Double.init)
        var v = secondMoment.toArray().map(Double.init)
        let g = gradient.toArray().map(Double.init)
        let (b1, b2) = (Double(u.beta1), Double(u.beta2))
        for i in w.indices {
            let gi = g[i] + Double(u.l2) * w[i]
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            w[i] = w[i] * Double(u.decay) - Double(u.stepSize) * m[i] / (v[i].squareRoot() / Double(u.correction2Root) + Double(u.eps))
        }
        store(w.map(Float.init), into: parameter)
        store(m.map(Float.init), into: firstMoment)
        store(v.map(Float.init), into: secondMoment)
    }

    public func sgdUpdate(_ parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, _ u: SGDUpdate) {
        parameter.thaw()
        var w = parameter.toArray().map(Double.init)
        let g = gradient.toArray().map(Double.init)
        var buffer = momentumBuffer?.toArray().map(Double.init) ?? []
        let mu = Double(u.momentum)
        for i in w.indices {
            var d = g[i] + Double(u.weightDecay) * w[i]
            if mu != 0 {
                buffer[i] = u.firstStep ? d : mu * buffer[i] + d
                d = u.nesterov ? d + mu * buffer[i] : buffer[i]
            }
            w[i] -= Double(u.learningRate) * d
        }
        store(w.map(Float.init), into: parameter)
        if mu != 0, let momentumBuffer { store(buffer.map(Float.init), into: momentumBuffer) }
    }

    public func lerp(_ average: Tensor, toward x: Tensor, decay: Float) {
        average.thaw()
        let d = Double(decay)
        store(zip(average.toArray(), x.toArray()).map { Float(d * Double($0) + (1 - d) * Double($1)) }, into: average)
    }

    public func sumOfSquares(_ x: Tensor) -> Double { x.toArray().reduce(0) { $0 + Double($1) * Double($1) } }
}

extension Double {
    fileprivate var float: Float { Float(self) }
}
