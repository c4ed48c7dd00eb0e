import Foundation

/// A learning rate as a function of the optimiser step (0-based).
public protocol LRSchedule {
    func learningRate(at step: Int) -> Float
}

/// Linear warm-up from `warmupStart` to `base` over `warmupSteps`, then a cosine decay to `minimum` at
/// `totalSteps` (timm's `CosineLRScheduler` with per-step updates).
public struct WarmupCosineSchedule: LRSchedule {
    public var base: Float, warmupSteps: Int, totalSteps: Int, warmupStart: Float, minimum: Float

    public init(base: Float, warmupSteps: Int, totalSteps: Int, warmupStart: Float = 0, minimum: Float = 0) {
        precondition(totalSteps > warmupSteps, "total steps \(totalSteps) must exceed warm-up steps \(warmupSteps)")
        self.base = base
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.warmupStart = warmupStart
        self.minimum = minimum
    }

    public func learningRate(at step: Int) -> Float {
        if step < warmupSteps {
            return warmupStart + (base - warmupStart) * Float(step) / Float(warmupSteps)
        }
        let progress = min(1, Double(step - warmupSteps) / Double(totalSteps - warmupSteps))
        return minimum + (base - minimum) * Float(0.5 * (1 + cos(Double.pi * progress)))
    }
}

/// The rate times `gamma` every `stepSize` steps (torch's `StepLR`).
public struct StepSchedule: LRSchedule {
    public var base: Float, stepSize: Int, gamma: Float

    public init(base: Float, stepSize: Int, gamma: Float = 0.1) {
        precondition(stepSize > 0, "step size must be positive")
        self.base = base
        self.stepSize = stepSize
        self.gamma = gamma
    }

    public func learningRate(at step: Int) -> Float {
        base * Float(Foundation.pow(Double(gamma), Double(step / stepSize)))
    }
}

/// The Transformer's schedule (Vaswani et al. 2017; tensor2tensor's "noam"): a linear rise to `peak` over
/// `warmupSteps`, then a decay with the inverse square root of the step. t2t writes it as
/// lr · d^-1/2 · min((s+1) · w^-3/2, (s+1)^-1/2); `peak` is that at s + 1 = w.
public struct NoamSchedule: LRSchedule {
    public var peak: Float, warmupSteps: Int

    public init(peak: Float, warmupSteps: Int) {
        self.peak = peak
        self.warmupSteps = max(warmupSteps, 1)
    }

    public func learningRate(at step: Int) -> Float {
        let s = Float(step + 1), w = Float(warmupSteps)
        return peak * min(s / w, (w / s).squareRoot())
    }
}
