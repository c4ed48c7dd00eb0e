import Foundation

/// Convolution, pooling and batch normalisation as the plainest loops (float32 values, double sums).
/// Also the channel-blocked variants, by way of channels-first.
extension ReferenceBackend {
    /// A channel-blocked [B, C / b, H, W, b] tensor as channels-first [B, C, H, W] (a plain tensor as it is).
    private func channelsFirst(_ x: Tensor) -> Tensor {
        guard x.rank == 5 else { return x }
        let (b, blocks, h, w, block) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        return permute(x, [0, 1, 4, 2, 3]).rawView([b, blocks * block, h, w])
    }

    /// Channels-first [B, C, H, W] in blocks of `block` channels (1: as it is).
    private func channelBlocked(_ x: Tensor, _ block: Int) -> Tensor {
        guard block > 1 else { return x }
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        return permute(x.rawView([b, c / block, block, h, w]), [0, 1, 3, 4, 2])
    }

    /// The loops read channels-first memory.
    public var preferredChannelBlock: Int { 1 }

    // Channel-blocked images are computed channels-first and blocked again: the loops below read [B, C, H, W].

    public func convolution(_ x: Tensor, weight: Tensor, bias: Tensor?, _ g: WindowGeometry) -> Tensor {
        channelBlocked(plainConvolution(channelsFirst(x), weight: weight, bias: bias, g), x.channelBlock)
    }

    public func convolutionBackward(
        gradOutput: Tensor, input: Tensor, weight: Tensor, _ g: WindowGeometry, inputGradient: Bool, biasGradient: Bool
    ) -> (input: Tensor?, weight: Tensor, bias: Tensor?) {
        let grads = plainConvolutionBackward(
            gradOutput: channelsFirst(gradOutput), input: channelsFirst(input), weight: weight, g, inputGradient: inputGradient,
            biasGradient: biasGradient)
        return (grads.input.map { channelBlocked($0, input.channelBlock) }, grads.weight, grads.bias)
    }

    public func pooling(_ x: Tensor, _ kind: PoolingKind, _ g: WindowGeometry) -> (output: Tensor, workspace: Tensor?) {
        let (output, workspace) = plainPooling(channelsFirst(x), kind, g)
        return (channelBlocked(output, x.channelBlock), workspace)
    }

    public func poolingBackward(gradOutput: Tensor, input: Tensor, workspace: Tensor?, _ kind: PoolingKind, _ g: WindowGeometry)
        -> Tensor
    {
        let grad = plainPoolingBackward(gradOutput: channelsFirst(gradOutput), input: channelsFirst(input), workspace: workspace, kind, g)
        return channelBlocked(grad, input.channelBlock)
    }

    public func batchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, statistics: (mean: Tensor, variance: Tensor)?, eps: Float)
        -> (output: Tensor, mean: Tensor, variance: Tensor)
    {
        let (output, mean, variance) = plainBatchNorm(channelsFirst(x), weight: weight, bias: bias, statistics: statistics, eps: eps)
        return (channelBlocked(output, x.channelBlock), mean, variance)
    }

    public func batchNormBackward(
        gradOutput: Tensor, input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, eps: Float,
        fixedStatistics: Bool
    ) -> (input: Tensor, weight: Tensor?, bias: Tensor?) {
        let grads = plainBatchNormBackward(
            gradOutput: channelsFirst(gradOutput), input: channelsFirst(input), mean: mean, variance: variance, weight: weight,
            bias: bias, eps: eps, fixedStatistics: fixedStatistics)
        return (channelBlocked(grads.input, input.channelBlock), grads.weight, grads.bias)
    }

    /// For output position `o` along one axis, the input positions the window's taps read (nil where padding).
    private func taps(_ o: Int, axis: Int, _ g: WindowGeometry, size: Int) -> [Int?] {
        (0..<g.kernel[axis]).map { k in
            let i = o * g.stride[axis] - g.paddingBefore[axis] + k * g.dilation[axis]
            return i >= 0 && i < size ? i : nil
        }
    }

    private func plainConvolution(_ x: Tensor, weight: Tensor, bias: Tensor?, _ g: WindowGeometry) -> Tensor {
        let (b, cin, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (cout, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let out = g.outputSize([h, w]), (oh, ow) = (out[0], out[1])
        let groupIn = cin / g.groups, groupOut = cout / g.groups
        let xs = x.toArray(), ws = weight.toArray(), bs = bias?.toArray()
        var result = [Float](repeating: 0, count: b * cout * oh * ow)
        for n in 0..<b {
            for o in 0..<cout {
                let group = o / groupOut
                for y in 0..<oh {
                    let rows = taps(y, axis: 0, g, size: h)
                    for x0 in 0..<ow {
                        let cols = taps(x0, axis: 1, g, size: w)
                        var sum = Double(bs?[o] ?? 0)
                        for c in 0..<groupIn {
                            let input = group * groupIn + c
                            for (i, row) in rows.enumerated() {
                                guard let row else { continue }
                                for (j, col) in cols.enumerated() {
                                    guard let col else { continue }
                                    sum +=
                                        Double(xs[((n * cin + input) * h + row) * w + col])
                                        * Double(ws[((o * groupIn + c) * kh + i) * kw + j])
                                }
                            }
                        }
                        result[((n * cout + o) * oh + y) * ow + x0] = Float(sum)
                    }
                }
            }
        }
        return make([b, cout, oh, ow], .float32, result)
    }

    private func plainConvolutionBackward(
        gradOutput: Tensor, input: Tensor, weight: Tensor, _ g: WindowGeometry, inputGradient: Bool, biasGradient: Bool
    ) -> (input: Tensor?, weight: Tensor, bias: Tensor?) {
        let (b, cin, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (cout, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let (oh, ow) = (gradOutput.shape[2], gradOutput.shape[3])
        let groupIn = cin / g.groups, groupOut = cout / g.groups
        let xs = input.toArray(), ws = weight.toArray(), gs = gradOutput.toArray()
        var gx = [Double](repeating: 0, count: xs.count), gw = [Double](repeating: 0, count: ws.count)
        var gb = [Double](repeating: 0, count: cout)
        for n in 0..<b {
            for o in 0..<cout {
                let group = o / groupOut
                for y in 0..<oh {
                    let rows = taps(y, axis: 0, g, size: h)
                    for x0 in 0..<ow {
                        let cols = taps(x0, axis: 1, g, size: w)
                        let grad = Double(gs[((n * cout + o) * oh + y) * ow + x0])
                        gb[o] += grad
                        for c in 0..<groupIn {
                            let channel = group * groupIn + c
                            for (i, row) in rows.enumerated() {
                                guard let row else { continue }
                                for (j, col) in cols.enumerated() {
                                    guard let col else { continue }
                                    let xi = ((n * cin + channel) * h + row) * w + col, wi = ((o * groupIn + c) * kh + i) * kw + j
                                    gx[xi] += grad * Double(ws[wi])
                                    gw[wi] += grad * Double(xs[xi])
                                }
                            }
                        }
                    }
                }
            }
        }
        return (
            inputGradient ? make(input.shape, .float32, gx.map(Float.init)) : nil, make(weight.shape, .float32, gw.map(Float.init)),
            biasGradient ? make([cout], .float32, gb.map(Float.init)) : nil
        )
    }

    private func plainPooling(_ x: Tensor, _ kind: PoolingKind, _ g: WindowGeometry) -> (output: Tensor, workspace: Tensor?) {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let out = g.outputSize([h, w]), (oh, ow) = (out[0], out[1])
        let xs = x.toArray()
        var result = [Float](repeating: 0, count: b * c * oh * ow), chosen = result
        for plane in 0..<(b * c) {
            for y in 0..<oh {
                let rows = taps(y, axis: 0, g, size: h)
                for x0 in 0..<ow {
                    let cols = taps(x0, axis: 1, g, size: w)
                    let inside = rows.compactMap { $0 }.flatMap { r in cols.compactMap { $0 }.map { r * w + $0 } }
                    let o = (plane * oh + y) * ow + x0
                    switch kind {
                    case .max:
                        let best = inside.max { xs[plane * h * w + $0] < xs[plane * h * w + $1] }!
                        result[o] = xs[plane * h * w + best]
                        chosen[o] = Float(best)
                    case .average, .averageExcludingPadding:
                        let sum = inside.reduce(0.0) { $0 + Double(xs[plane * h * w + $1]) }
                        let count = kind == .average ? g.kernel[0] * g.kernel[1] : inside.count
                        result[o] = Float(sum / Double(count))
                    }
                }
            }
        }
        return (make([b, c, oh, ow], .float32, result), kind == .max ? make([b, c, oh, ow], .float32, chosen) : nil)
    }

    private func plainPoolingBackward(gradOutput: Tensor, input: Tensor, workspace: Tensor?, _ kind: PoolingKind, _ g: WindowGeometry)
        -> Tensor
    {
        let (b, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = (gradOutput.shape[2], gradOutput.shape[3])
        let gs = gradOutput.toArray(), chosen = workspace?.toArray()
        var gx = [Double](repeating: 0, count: input.count)
        for plane in 0..<(b * c) {
            for y in 0..<oh {
                let rows = taps(y, axis: 0, g, size: h)
                for x0 in 0..<ow {
                    let cols = taps(x0, axis: 1, g, size: w)
                    let o = (plane * oh + y) * ow + x0
                    if kind == .max {
                        gx[plane * h * w + Int(chosen![o])] += Double(gs[o])
                        continue
                    }
                    let inside = rows.compactMap { $0 }.flatMap { r in cols.compactMap { $0 }.map { r * w + $0 } }
                    let count = kind == .average ? g.kernel[0] * g.kernel[1] : inside.count
                    for i in inside { gx[plane * h * w + i] += Double(gs[o]) / Double(count) }
                }
            }
        }
        return make(input.shape, .float32, gx.map(Float.init))
    }

    private func plainBatchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, statistics: (mean: Tensor, variance: Tensor)?, eps: Float)
        -> (output: Tensor, mean: Tensor, variance: Tensor)
    {
        let (b, c) = (x.shape[0], x.shape[1]), plane = x.count / (b * c)
        let xs = x.toArray(), ws = weight?.toArray(), bs = bias?.toArray()
        var mean = statistics?.mean.toArray() ?? [], variance = statistics?.variance.toArray() ?? []
        if statistics == nil {
            for channel in 0..<c {
                var sum = 0.0, squares = 0.0
                for n in 0..<b {
                    for k in 0..<plane {
                        let v = Double(xs[(n * c + channel) * plane + k])
                        sum += v
                        squares += v * v
                    }
                }
                let count = Double(b * plane), m = sum / count
                mean.append(Float(m))
                variance.append(Float(squares / count - m * m))
            }
        }
        var out = [Float](repeating: 0, count: x.count)
        for n in 0..<b {
            for channel in 0..<c {
                let inverse = 1 / (Double(variance[channel]) + Double(eps)).squareRoot()
                for k in 0..<plane {
                    let i = (n * c + channel) * plane + k
                    out[i] = Float(
                        (Double(xs[i]) - Double(mean[channel])) * inverse * Double(ws?[channel] ?? 1) + Double(bs?[channel] ?? 0))
                }
            }
        }
        return (make(x.shape, .float32, out), make([c], .float32, mean), make([c], .float32, variance))
    }

    private func plainBatchNormBackward(
        gradOutput: Tensor, input: Tensor, mean: Tensor, variance: Tensor, weight: Tensor?, bias: Tensor?, eps: Float,
        fixedStatistics: Bool
    ) -> (input: Tensor, weight: Tensor?, bias: Tensor?) {
        let (b, c) = (input.shape[0], input.shape[1]), plane = input.count / (b * c)
        let xs = input.toArray(), gs = gradOutput.toArray(), ms = mean.toArray(), vs = variance.toArray(), ws = weight?.toArray()
        var gx = [Float](repeating: 0, count: input.count), gw = [Float](repeating: 0, count: c), gb = gw
        let count = Double(b * plane)
        for channel in 0..<c {
            let inverse = 1 / (Double(vs[channel]) + Double(eps)).squareRoot()
            var sumG = 0.0, sumGX = 0.0
            for n in 0..<b {
                for k in 0..<plane {
                    let i = (n * c + channel) * plane + k
                    sumG += Double(gs[i])
                    sumGX += Double(gs[i]) * (Double(xs[i]) - Double(ms[channel])) * inverse
                }
            }
            gb[channel] = Float(sumG)
            gw[channel] = Float(sumGX)
            let scale = Double(ws?[channel] ?? 1) * inverse
            for n in 0..<b {
                for k in 0..<plane {
                    let i = (n * c + channel) * plane + k
                    let normalised = (Double(xs[i]) - Double(ms[channel])) * inverse
                    // With batch statistics: dx = γ/σ · (g - mean(g) - x̂ · mean(g · x̂)); with fixed ones, γ/σ · g.
                    gx[i] = Float(
                        fixedStatistics ? scale * Double(gs[i]) : scale * (Double(gs[i]) - sumG / count - normalised * sumGX / count))
                }
            }
        }
        return (
            make(input.shape, .float32, gx), weight == nil ? nil : make([c], .float32, gw), bias == nil ? nil : make([c], .float32, gb)
        )
    }
}
