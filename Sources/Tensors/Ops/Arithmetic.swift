/// Elementwise arithmetic with broadcasting, scalar arithmetic, and the elementwise math functions.

extension Tensor {
    var backend: Backend { device.backend }

    /// Sums a broadcast gradient back down to `shape` (the adjoint of broadcasting to `self.shape`).
    func sumTo(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        let padded = Shape.padded(target, to: rank)
        return backend.reduce(.sum, self, to: padded).rawView(target)
    }

    /// This tensor broadcast to `target` and materialised.
    public func expand(to target: [Int]) -> Tensor {
        precondition(Shape.broadcast(shape, target) == target, "cannot expand \(shape) to \(target)")
        if shape == target { return self }
        let out = backend.expand(rawView(Shape.padded(shape, to: target.count)), to: target, scale: 1)
        let inputShape = shape
        return record(out, inputs: [self], "expand") { g in [g.sumTo(inputShape)] }
    }

    fileprivate func binaryOp(_ op: BinaryOp, _ other: Tensor) -> Tensor {
        let out = backend.binary(op, self, other)
        let (a, b) = (self, other)
        return record(out, inputs: [a, b], op.rawValue) { g in
            let backend = g.backend
            switch op {
            case .add:
                return [a.requiresGrad ? g.sumTo(a.shape) : nil, b.requiresGrad ? g.sumTo(b.shape) : nil]
            case .sub:
                return [
                    a.requiresGrad ? g.sumTo(a.shape) : nil,
                    b.requiresGrad ? backend.unary(.affine(scale: -1, shift: 0), g).sumTo(b.shape) : nil
                ]
            case .mul:
                return [
                    a.requiresGrad ? backend.binary(.mul, g, b).sumTo(a.shape) : nil,
                    b.requiresGrad ? backend.binary(.mul, g, a).sumTo(b.shape) : nil
                ]
            case .div:
                // d(a/b)/db = -a/b² = -(a/b)/b
                return [
                    a.requiresGrad ? backend.binary(.div, g, b).sumTo(a.shape) : nil,
                    b.requiresGrad
                        ? backend.binary(.div, backend.binary(.mul, g, out), b)
                            .unaryRaw(.affine(scale: -1, shift: 0)).sumTo(b.shape) : nil
                ]
            case .max, .min:
                preconditionFailure("\(op) has no gradient")
            }
        }
    }

    func unaryRaw(_ op: UnaryOp) -> Tensor { backend.unary(op, self) }

    /// Applies an elementwise function; its gradient comes from the backend's matching backward kernel.
    public func apply(_ op: UnaryOp) -> Tensor {
        let out = backend.unary(op, self)
        let input = self
        return record(out, inputs: [input], "\(op)") { g in [g.backend.unaryBackward(op, gradOutput: g, input: input)] }
    }

    public func exp() -> Tensor { apply(.exp) }
    public func log() -> Tensor { apply(.log) }
    public func sqrt() -> Tensor { apply(.sqrt) }
    public func rsqrt() -> Tensor { apply(.power(scale: 1, exponent: -0.5)) }
    public func tanh() -> Tensor { apply(.tanh) }
    public func relu() -> Tensor { apply(.relu) }
    public func sigmoid() -> Tensor { apply(.sigmoid) }
    public func square() -> Tensor { apply(.square) }
    public func pow(_ exponent: Float) -> Tensor { apply(.power(scale: 1, exponent: exponent)) }
    /// GELU: exact (erf) by default, as timm and Hugging Face run ViT weights; `approximate` uses the tanh form.
    public func gelu(approximate: Bool = false) -> Tensor { apply(approximate ? .geluTanh : .geluErf) }

    // MARK: Operators

    public static func + (a: Tensor, b: Tensor) -> Tensor { a.binaryOp(.add, b) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { a.binaryOp(.sub, b) }
    /// The same values, with the gradient multiplied by `factor` on its way back. Data parallelism's gathered
    /// contrastive features use it: a rank's own rows carry the gradient of every rank's copy of the loss.
    public func scalingGradient(by factor: Float) -> Tensor {
        record(detach(), inputs: [self], "scale_gradient") { g in [g * factor] }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor { a.binaryOp(.mul, b) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { a.binaryOp(.div, b) }

    public static prefix func - (a: Tensor) -> Tensor { a.apply(.affine(scale: -1, shift: 0)) }
    public static func + (a: Tensor, s: Float) -> Tensor { a.apply(.affine(scale: 1, shift: s)) }
    public static func + (s: Float, a: Tensor) -> Tensor { a.apply(.affine(scale: 1, shift: s)) }
    public static func - (a: Tensor, s: Float) -> Tensor { a.apply(.affine(scale: 1, shift: -s)) }
    public static func - (s: Float, a: Tensor) -> Tensor { a.apply(.affine(scale: -1, shift: s)) }
    public static func * (a: Tensor, s: Float) -> Tensor { a.apply(.affine(scale: s, shift: 0)) }
    public static func * (s: Float, a: Tensor) -> Tensor { a.apply(.affine(scale: s, shift: 0)) }
    public static func / (a: Tensor, s: Float) -> Tensor { a.apply(.affine(scale: 1 / s, shift: 0)) }
    public static func / (s: Float, a: Tensor) -> Tensor { a.apply(.power(scale: s, exponent: -1)) }
}
