import Foundation

/// A one-line progress bar on stderr: done/total, a bar, the rate and the time left. Redrawn at most 10 times a
/// second when stderr is a terminal; in a log (no terminal) a plain line every `logInterval` seconds instead, without
/// control characters, so that long work is never silent.
final class ProgressBar {
    private let total: Int
    private let unit: String
    private let started = Date()
    private var lastDraw = Date.distantPast
    private var lastLog = Date()
    private(set) var done = 0
    let enabled: Bool
    /// Seconds between two log lines when stderr is no terminal.
    static let logInterval: TimeInterval = 60

    init(total: Int, unit: String, enabled: Bool = isatty(STDERR_FILENO) != 0) {
        self.total = total
        self.unit = unit
        self.enabled = enabled
    }

    /// Rows of the terminal on stderr (24 if unknown): the "screenful" that decides whether a bar is worth it.
    static var terminalRows: Int {
        var size = winsize()
        return ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_row > 0 ? Int(size.ws_row) : 24
    }

    func advance(by count: Int = 1, note: String = "") {
        done += count
        let elapsed = Date().timeIntervalSince(started)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let remaining = rate > 0 ? Double(total - done) / rate : 0
        guard enabled else {
            guard done < total, Date().timeIntervalSince(lastLog) >= Self.logInterval else { return }
            lastLog = Date()
            printError(
                "  \(done)/\(total) \(unit), \(String(format: "%.1f", rate)) \(unit)/s, ETA \(Self.clock(remaining))\(note.isEmpty ? "" : " " + note)"
            )
            return
        }
        guard done == total || Date().timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = Date()
        let width = 30
        let filled = total > 0 ? width * done / total : width
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let line =
            "\r\(done)/\(total) \(bar) \(String(format: "%.1f", rate)) \(unit)/s, ETA \(Self.clock(remaining))\(note.isEmpty ? "" : " " + note)"
        FileHandle.standardError.write(Data((line + "\u{1B}[K").utf8))
        if done >= total { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// Writes a line to stderr.
func printError(_ message: String) {
    // Of several ranks, rank 0 tells the run's story; the others say only what went wrong on their side (a sample
    // skipped in their shards, a damaged shard, an error), with their rank.
    if let rank = MPIJob.rank, rank > 0 {
        guard ["skipped", "error", "warning", "/"].contains(where: { message.hasPrefix($0) }) else { return }
        FileHandle.standardError.write(Data("rank \(rank): \(message)\n".utf8))
        return
    }
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
