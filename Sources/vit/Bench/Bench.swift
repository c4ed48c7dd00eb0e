import ArgumentParser
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the speed of the engine.",
        subcommands: [MatmulBench.self, AutogradBench.self, ModelBench.self, DataBench.self]
    )
}

/// Wall-clock timing for benchmarks: runs `body` until both `minimumRuns` and `minimumSeconds` are reached and
/// returns the median seconds per run.
func medianSeconds(warmup: Int = 2, minimumRuns: Int = 5, minimumSeconds: Double = 0.5, _ body: () -> Void) -> Double {
    for _ in 0..<warmup { body() }
    var samples: [Double] = []
    let started = DispatchTime.now().uptimeNanoseconds
    while samples.count < minimumRuns
        || Double(DispatchTime.now().uptimeNanoseconds - started) * 1e-9 < minimumSeconds
    {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
    }
    samples.sort()
    return samples[samples.count / 2]
}

func format(_ value: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }
