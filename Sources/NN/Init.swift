import Foundation
import Tensors

/// Parameter initialisers, drawing from `GlobalRandom` unless given a generator.
public enum Init {
    /// True inside `withoutDrawing`: every initialiser returns uninitialised memory.
    @TaskLocal public static var isSkipped = false

    /// Builds modules whose parameters are about to be overwritten by a checkpoint, without drawing their values:
    /// Hugging Face's `no_init_weights` and PyTorch's meta-device loading avoid the same waste (for ViT-B, 86M random
    /// draws and 330 MiB of pages touched, then thrown away). Fresh pages that are never written cost no memory.
    public static func withoutDrawing<T>(_ body: () throws -> T) rethrows -> T {
        try $isSkipped.withValue(true) { try body() }
    }

    /// Normal(0, std²) truncated to [lower, upper] by redrawing, as `torch.nn.init.trunc_normal_`. The bounds
    /// default to ±2 std (timm's `trunc_normal_(std=.02)` passes absolute ±2, which for std 0.02 never truncates;
    /// ±2 std is the JAX / big_vision choice and what "truncated normal" means in the ViT paper's code).
    public static func truncatedNormal(
        _ shape: [Int], std: Float = 0.02, lower: Float? = nil, upper: Float? = nil,
        using rng: inout SeededGenerator
    ) -> Tensor {
        let lo = lower ?? -2 * std, hi = upper ?? 2 * std
        let t = Tensor(uninitializedShape: shape)
        if isSkipped { return t }
        let p = t.pointer
        for i in 0..<t.count {
            var v: Float
            repeat { v = std * rng.nextNormal() } while v < lo || v > hi
            p[i] = v
        }
        return t
    }

    public static func truncatedNormal(_ shape: [Int], std: Float = 0.02) -> Tensor {
        GlobalRandom.withGenerator { truncatedNormal(shape, std: std, using: &$0) }
    }

    /// Uniform(-a, a) with a = sqrt(6 / (fan_in + fan_out)), for a weight [out, in, ...].
    public static func xavierUniform(_ shape: [Int], using rng: inout SeededGenerator) -> Tensor {
        precondition(shape.count >= 2, "Xavier init needs a weight of rank >= 2, got \(shape)")
        let receptive = shape.dropFirst(2).reduce(1, *)
        let fanIn = shape[1] * receptive, fanOut = shape[0] * receptive
        let bound = (6 / Float(fanIn + fanOut)).squareRoot()
        if isSkipped { return Tensor(uninitializedShape: shape) }
        return Tensor.uniform(shape, low: -bound, high: bound, using: &rng)
    }

    public static func xavierUniform(_ shape: [Int]) -> Tensor {
        GlobalRandom.withGenerator { xavierUniform(shape, using: &$0) }
    }

    /// Normal(0, std²), not truncated (`torch.nn.init.normal_`, what MAE draws its class and mask tokens from).
    public static func normal(_ shape: [Int], std: Float) -> Tensor {
        if isSkipped { return Tensor(uninitializedShape: shape) }
        return GlobalRandom.withGenerator { Tensor.randn(shape, std: std, using: &$0) }
    }

    /// Redraws an existing weight [out, in, ...] Xavier-uniform, in place.
    public static func xavierUniform(into weight: Tensor) {
        if isSkipped { return }
        weight.assign(xavierUniform(weight.shape))
    }

    public static func zeros(_ shape: [Int]) -> Tensor { isSkipped ? Tensor(uninitializedShape: shape) : Tensor.zeros(shape) }
    public static func ones(_ shape: [Int]) -> Tensor { isSkipped ? Tensor(uninitializedShape: shape) : Tensor.ones(shape) }

    /// Sets `tensor` to zero (timm's zero-initialised heads), unless initialisation is skipped.
    public static func zero(_ tensor: Tensor) {
        if !isSkipped { tensor.device.backend.fill(tensor, 0) }
    }
}
