import ArgumentParser
import Foundation
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
