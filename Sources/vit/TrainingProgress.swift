import ArgumentParser
import Foundation
import Tensors
import Training

/// What the training commands (`train`, `pretrain`, `train-clip`) show while a run goes on: each epoch's bar on
/// stderr with its rate and ETA (in a log, where stderr is no terminal, a line a minute instead: `ProgressBar`), a line per finished
/// epoch on stderr and its metrics as a JSON line on stdout, and at the end where the run is or how to continue it.
final class TrainingProgress {
    private let batchSize: Int
    private let epochs: Int
    private var bar: ProgressBar?

    private init(batchSize: Int, epochs: Int) {
        self.batchSize = batchSize
        self.epochs = epochs
    }

    /// Runs `training` until it ends or stops (`maxSteps`, Ctrl-C or SIGTERM through `interrupt`), showing its
    /// progress; then says where the run is (`files`: what its folder holds), and throws the exit status of an
    /// interrupt.
    static func run<Record>(
        _ training: Training<Record>, maxSteps: Int?, interrupt: Interrupt, output: String, files: String
    ) throws {
        training.stepLimit = maxSteps
        training.shouldStop = { interrupt.requested }
        Precision.noteMixedPrecision(training.precision)
        let dropped = training.images.count % training.batchSize
        if dropped > 0 {
            // Said once, not silently: every epoch trains on whole batches (its order, and so what is left out, changes).
            printError(
                "note: \(dropped) of the \(training.images.count) images are left out of each epoch: the last, incomplete batch of --batch-size \(training.batchSize) is dropped (other images each epoch)"
            )
        }
        let progress = TrainingProgress(batchSize: training.batchSize, epochs: training.epochs)
        training.onEvent = { event in
            // Of several ranks, rank 0 shows the run.
            guard training.writesFiles else { return }
            switch event {
            case .step(let step): progress.step(step)
            case .evaluating(let images):
                progress.bar = nil
                printError("evaluating on \(images) held-out images ...")
            case .epochFinished(let record): progress.epochFinished(record)
            case .saved(let url): interrupt.checkpoint = url
            }
        }
        interrupt.checkpoint = FileManager.default.fileExists(atPath: training.checkpointURL.path) ? training.checkpointURL : nil
        interrupt.trainingStarted()
        let outcome = try training.run()
        // The rate of the steps after the first two (which include the first batches' preparation), for comparing
        // setups (`docs/parallel/measure.sh`).
        let timed = training.stepSeconds.dropFirst(2)
        if timed.count >= 2 {
            printError(
                String(
                    format: "speed: %.1f img/s over steps 3-%d (batch %d: %.0f ms a step)",
                    Double(timed.count * training.batchSize) / timed.reduce(0, +), training.stepSeconds.count, training.batchSize,
                    timed.reduce(0, +) / Double(timed.count) * 1000))
        }
        if let parallel = training.dataParallel { printError(parallel.summary) }
        switch outcome {
        case .finished:
            printError("done: \(output) (\(files))")
        case .stopped:
            printError(
                "\nstopped in epoch \(training.state.epoch + 1) after batch \(training.state.batch) of \(training.stepsPerEpoch); model and checkpoint saved: continue with --resume"
            )
            if interrupt.requested { throw ExitCode(interrupt.exitStatus) }
        }
    }

    private func step(_ step: TrainingStep) {
        if bar == nil {
            printError("epoch \(step.epoch + 1)/\(epochs)")
            bar = ProgressBar(total: (step.batches - step.batch) * batchSize, unit: "img")
        }
        bar?.advance(by: batchSize, note: step.summary)
    }

    /// An epoch ended: a line to stderr, the metrics record to stdout (flushed: a pipe sees each epoch).
    private func epochFinished<Record: TrainingRecord>(_ record: Record) {
        bar = nil
        printError(
            "epoch \(record.epoch)/\(epochs): \(record.summary) | \(String(format: "%.1f img/s, %.0f s", record.imagesPerSecond, record.seconds))"
        )
        print(record.json())
        fflush(stdout)
    }
}

/// A resumed run keeps the recipe and architecture saved with it; options that would have set them are named in a
/// note rather than silently ignored (a changed --lr on --resume is not applied).
enum ResumedRun {
    /// The long options on the command line other than `used` (what resuming reads: data, output, epochs, ...).
    static func unusedOptions(used: Set<String>, arguments: [String] = CommandLine.arguments) -> [String] {
        var seen: [String] = []
        for argument in arguments.dropFirst() where argument.hasPrefix("--") {
            let name = String(argument.split(separator: "=", maxSplits: 1)[0])
            if !used.contains(name) && !seen.contains(name) { seen.append(name) }
        }
        return seen
    }

    /// Says when --precision moved a run to another compute precision (`autocast`: nil is float32), the one recipe
    /// setting a resume may change: it is the host's matter (bf16 is emulated and slow without AVX512-BF16 or AMX).
    static func notePrecisionChange(from saved: Precision, to now: Precision) {
        guard saved != now else { return }
        printError(
            "note: continuing in \(now) (the run so far: \(saved)): the weights and moments carry over; the steps from here differ from those \(saved) would take"
        )
    }

    /// Prints the note when any option given goes unused; `changeable` are the recipe's options a resume applies.
    static func noteUnusedOptions(used: Set<String>, changeable: [String] = ["--epochs"]) {
        let unused = unusedOptions(
            used: used.union(changeable).union(["--resume", "--output", "--data", "--max-steps", "--max-image-pixels"]))
        guard !unused.isEmpty else { return }
        printError(
            "note: \(unused.joined(separator: ", ")) not used: a resumed run keeps the recipe and architecture it started with (only \(changeable.joined(separator: " and ")) may change)"
        )
    }
}
