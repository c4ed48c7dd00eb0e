import ArgumentParser
import Foundation
import Tensors
import Training

/// What the training commands (`train`, `pretrain`, `train-clip`) show while a run goes on: each epoch's bar on
/// stderr with its rate and ETA (in a log, where stderr is no terminal, a line a minute instead), a line per finished
/// epoch on stderr and its metrics as a JSON line on stdout, and at the end where the run is or how to continue it.
final class TrainingProgress {
    private let batchSize: Int
    let epochs: Int
    private var bar: ProgressBar?
    private var lastLog = Date()

    init(batchSize: Int, epochs: Int) {
        self.batchSize = batchSize
        self.epochs = epochs
    }

    /// A step of `batch` (0-based) of the `batches` of `epoch` (0-based); `note` follows the bar (loss, rate).
    func step(epoch: Int, batch: Int, of batches: Int, note: String) {
        if bar == nil {
            printError("epoch \(epoch + 1)/\(epochs)")
            bar = ProgressBar(total: (batches - batch) * batchSize, unit: "img")
        }
        bar?.advance(by: batchSize, note: note)
        if bar?.enabled == false && Date().timeIntervalSince(lastLog) >= 60 {
            lastLog = Date()
            printError("  batch \(batch + 1)/\(batches): \(note)")
        }
    }

    /// The epoch's training steps are over (evaluation follows, or the epoch ended).
    func endSteps() { bar = nil }

    /// An epoch ended: `line` to stderr, the metrics record `json` to stdout (flushed: a pipe sees each epoch).
    func epochFinished(_ line: String, json: String) {
        bar = nil
        printError(line)
        print(json)
        fflush(stdout)
    }

    /// Reports how the run ended: done (`files` are what the run folder holds), or stopped with a checkpoint, the
    /// exit status of an interrupt (Ctrl-C, SIGTERM) then thrown.
    static func finish(
        _ outcome: Trainer.Outcome, output: String, files: String, epoch: Int, batch: Int, stepsPerEpoch: Int, interrupt: Interrupt
    ) throws {
        switch outcome {
        case .finished:
            printError("done: \(output) (\(files))")
        case .stopped:
            printError(
                "\nstopped in epoch \(epoch + 1) after batch \(batch) of \(stepsPerEpoch); model and checkpoint saved: continue with --resume"
            )
            if interrupt.requested { throw ExitCode(interrupt.exitStatus) }
        }
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
    static func notePrecisionChange(from saved: DType?, to now: DType?) {
        guard saved != now else { return }
        let name = Autocast.precisionName
        printError(
            "note: continuing in \(name(now)) (the run so far: \(name(saved))): the weights and moments carry over; the steps from here differ from those \(name(saved)) would take"
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
