import Foundation

/// A small, fast, seedable generator (xoshiro256**, seeded through SplitMix64) so that initialisation, dropout and
/// shuffling are reproducible from one integer, and its state can be saved with a checkpoint.
public struct SeededGenerator: RandomNumberGenerator, Codable, Sendable {
    public private(set) var state: [UInt64]

    public init(seed: UInt64) {
        var s = seed
        func splitMix() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = [splitMix(), splitMix(), splitMix(), splitMix()]
    }

    public mutating func next() -> UInt64 {
        let result = rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = rotl(state[3], 45)
        return result
    }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1), with 24 random bits.
    public mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [0, 1), with 53 random bits.
    public mutating func nextDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Standard normal, by the Box-Muller transform.
    public mutating func nextNormal() -> Float {
        var u1 = nextDouble()
        while u1 <= .leastNonzeroMagnitude { u1 = nextDouble() }
        let u2 = nextDouble()
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

/// The generator that layers draw from when none is passed in (dropout, drop path, initialisers). Seed it once
/// for a reproducible run; its `state` is what a training checkpoint saves.
public enum GlobalRandom {
    nonisolated(unsafe) private static var generator = SeededGenerator(seed: 0)
    private static let lock = NSLock()

    public static func seed(_ seed: UInt64) { lock.withLock { generator = SeededGenerator(seed: seed) } }

    /// A generator that replaces the shared one for the work inside `using(_:_:)` (on that task or thread only).
    @TaskLocal static var override: RandomStream?

    /// Draws from the shared generator (serialised, so threads never corrupt its state), or from the stream that
    /// `using` put in place.
    public static func withGenerator<T>(_ body: (inout SeededGenerator) -> T) -> T {
        if let stream = override { return body(&stream.generator) }
        return lock.withLock { body(&generator) }
    }

    /// Runs `body` with dropout and drop path drawing from `stream` instead of the shared generator: a training run
    /// owns its randomness, so nothing else in the process (another model, a parallel test) can change it.
    public static func using<T>(_ stream: RandomStream, _ body: () throws -> T) rethrows -> T {
        try $override.withValue(stream, operation: body)
    }

    /// The generator's state, to save with a checkpoint and restore on resume.
    public static var state: SeededGenerator {
        get { lock.withLock { generator } }
        set { lock.withLock { generator = newValue } }
    }
}

/// A generator owned by one piece of work (a training run); see `GlobalRandom.using`.
public final class RandomStream: @unchecked Sendable {
    public var generator: SeededGenerator
    public init(_ generator: SeededGenerator) { self.generator = generator }
}
