/// Matrix products: batched `matmul` and the `linear` layer's x·Wᵀ + b.

extension Tensor {
    /// self [..., M, K] @ other [..., K, N] -> [..., M, N], batch axes broadcast (NumPy rules). The transpose flags
    /// read an operand with its last two axes swapped, without copying it.
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) -> Tensor {
        if let dtype = Autocast.dtype, self.dtype != dtype || other.dtype != dtype {
            return cast(to: dtype).matmul(other.cast(to: dtype), transposeSelf: transposeSelf, transposeOther: transposeOther)
        }
        let (a, b, tA, tB) = (self, other, transposeSelf, transposeOther)
        let out = backend.matmul(a, b, transposeA: tA, transposeB: tB, bias: nil, activation: nil)
        return record(out, inputs: [a, b], "matmul") { g in
            let backend = g.backend
            var gradA: Tensor?, gradB: Tensor?
            if a.requiresGrad {
                gradA =
                    tA
                    ? backend.matmul(b, g, transposeA: tB, transposeB: true, bias: nil, activation: nil)
                    : backend.matmul(g, b, transposeA: false, transposeB: !tB, bias: nil, activation: nil)
                gradA = gradA!.sumTo(a.shape)
            }
            if b.requiresGrad {
                if b.rank == 2 && a.rank > 2 && !tA {
                    // A weight shared by the batch: fold the batch into one product instead of summing B of them.
                    let a2 = a.rawView([a.count / a.shape[a.rank - 1], a.shape[a.rank - 1]])
                    let g2 = g.rawView([g.count / g.shape[g.rank - 1], g.shape[g.rank - 1]])
                    gradB =
                        tB
                        ? backend.matmul(g2, a2, transposeA: true, transposeB: false, bias: nil, activation: nil)
                        : backend.matmul(a2, g2, transposeA: true, transposeB: false, bias: nil, activation: nil)
                } else {
                    gradB =
                        tB
                        ? backend.matmul(g, a, transposeA: true, transposeB: tA, bias: nil, activation: nil)
                        : backend.matmul(a, g, transposeA: !tA, transposeB: false, bias: nil, activation: nil)
                    gradB = gradB!.sumTo(b.shape)
                }
            }
            return [gradA, gradB]
        }
    }

    /// A fully connected layer: self [..., in] · weightᵀ + bias -> [..., out], with `weight` [out, in] in PyTorch's
    /// layout. `activation` is fused into the product when nothing is being recorded (inference); while recording
    /// it runs as its own op, since its backward pass needs the pre-activation values.
    public func linear(weight: Tensor, bias: Tensor?, activation: UnaryOp? = nil) -> Tensor {
        precondition(
            weight.rank == 2 && shape.last == weight.shape[1],
            "linear: input \(shape) does not match weight \(weight.shape) ([out, in])")
        if let dtype = Autocast.dtype, self.dtype != dtype || weight.dtype != dtype {
            // The bias stays float32: oneDNN adds it to the float32 accumulator.
            return cast(to: dtype).linear(weight: weight.cast(to: dtype), bias: bias, activation: activation)
        }
        let recording =
            Autograd.isRecording
            && (requiresGrad || weight.requiresGrad || bias?.requiresGrad == true)
        if let activation, recording {
            return linear(weight: weight, bias: bias).apply(activation)
        }
        let x = self
        let out = backend.matmul(x, weight, transposeA: false, transposeB: true, bias: bias, activation: activation)
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return record(out, inputs: inputs, "linear") { g in
            let backend = g.backend
            let inFeatures = weight.shape[1], outFeatures = weight.shape[0]
            let g2 = g.rawView([g.count / outFeatures, outFeatures])  // [rows, out]
            let x2 = x.rawView([x.count / inFeatures, inFeatures])  // [rows, in]
            let gradX =
                x.requiresGrad
                ? backend.matmul(g, weight, transposeA: false, transposeB: false, bias: nil, activation: nil) : nil
            let gradW =
                weight.requiresGrad  // [out, in] = g2ᵀ · x2
                ? backend.matmul(g2, x2, transposeA: true, transposeB: false, bias: nil, activation: nil) : nil
            var grads = [gradX, gradW]
            if let bias {
                grads.append(bias.requiresGrad ? backend.reduce(.sum, g2, to: [1, outFeatures]).rawView(bias.shape) : nil)
            }
            return grads
        }
    }
}
