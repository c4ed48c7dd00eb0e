import Datasets
import Foundation
import Tensors

/// `steps.jsonl`: one JSON line per training step (`--log-steps`), for a loss curve finer than an epoch's mean and
/// for replaying a run elsewhere: the step (1-based, counted over the whole run), the epoch (1-based), the batch in
/// the epoch (0-based), the learning rate the step used, the indices of its images in the training set, and the
/// task's loss terms for the batch (what `metrics.jsonl` averages: `loss`, and e.g. `ce`, `l1`, `giou`).
///
/// A resumed run first drops the lines past its checkpoint, so the file always holds each step once.
final class StepLog {
    private let handle: FileHandle

    /// Opens `url` for appending, keeping only its first `keepingSteps` steps (the ones the checkpoint includes).
    init(url: URL, keepingSteps: Int) throws {
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: url.path) {
            let kept = try String(contentsOf: url, encoding: .utf8).split(separator: "\n").filter { line in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    let step = object["step"] as? Int
                else { return false }
                return step <= keepingSteps
            }
            try AtomicFile.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: url)
        } else {
            try fileManager.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data().write(to: url)
        }
        handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
    }

    /// The line of the step just done (`step`: steps done so far, this one included).
    func append(step: Int, epoch: Int, batch: TrainingBatch, learningRate: Float, sums: [String: Double]) throws {
        var line: [String: Any] = [
            "step": step, "epoch": epoch + 1, "batch": batch.index, "lr": Double(learningRate), "images": batch.members
        ]
        for (name, value) in sums { line[name] = value }
        var data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
        data.append(0x0A)
        try handle.write(contentsOf: data)
    }

    func close() { try? handle.close() }
}
