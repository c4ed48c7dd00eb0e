import Dispatch
import Foundation
import Tensors

/// Ctrl-C (SIGINT) and SIGTERM. While the data loads nothing has been written, and the first signal ends the process
/// at once. Once training runs, the first asks the trainer to save and stop after the current step (the command then
/// exits 130 for SIGINT, 143 for SIGTERM); a second ends the process without saving, from the signal's thread but
/// never in the middle of writing a file (`AtomicFile.endProcess` waits for a write in progress to be renamed).
final class Interrupt: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var count = 0
    private var training = false
    private var first: Int32 = 0
    private var saved: URL?

    /// The run's checkpoint once one exists (what a second signal leaves behind).
    var checkpoint: URL? {
        get { lock.withLock { saved } }
        set { lock.withLock { saved = newValue } }
    }

    init() {
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [unowned self] in received(number) }
            source.resume()
            sources.append(source)
        }
    }

    private func received(_ number: Int32) {
        let (n, training) = lock.withLock {
            count += 1
            if count == 1 { first = number }
            return (count, self.training)
        }
        let name = number == SIGINT ? "interrupted" : "terminated"
        if !training {
            printError("\n\(name) while loading: nothing was written")
            AtomicFile.endProcess(status: 128 + number)
        } else if n == 1 {
            printError("\n\(name): saving a checkpoint after this step (Ctrl-C again to quit without saving)")
        } else {
            let kept = checkpoint.map { "the last checkpoint is kept: \($0.path)" } ?? "no checkpoint had been written yet"
            printError("\n\(name) again: quitting without saving (\(kept))")
            AtomicFile.endProcess(status: 128 + number)
        }
    }

    /// From here on the first signal asks for a stop instead of ending the process.
    func trainingStarted() { lock.withLock { training = true } }

    var requested: Bool { lock.withLock { count > 0 } }

    /// 128 + the first signal's number: 130 for SIGINT, 143 for SIGTERM.
    var exitStatus: Int32 { lock.withLock { 128 + first } }
}
