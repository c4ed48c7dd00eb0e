import Foundation

/// Writes a file through a temporary sibling and a rename: the destination is either the old file or the new one.
/// A process killed mid-write leaves only its temporary file (`.NAME.PID.tmp`), which `removeStaleTemporaries`
/// deletes at the next start; a process that ends itself (a second Ctrl-C) goes through `endProcess`, which waits for
/// a write in progress to be renamed.
public enum AtomicFile {
    /// Held from the temporary file's creation to its rename.
    private static let writing = NSLock()

    public static func write(_ data: Data, to url: URL) throws {
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        writing.lock()
        defer { writing.unlock() }
        do {
            try data.write(to: temporary)
            if rename(temporary.path, url.path) != 0 {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw FileError(url, "could not be written: \(error.localizedDescription)")
        }
    }

    /// Ends the process now with `status`, from any thread, once no file is half written: waits for a write in
    /// progress to finish its rename and lets no other start. `_exit`, not `exit`: no atexit handlers or static
    /// destructors run while other threads may still be computing.
    public static func endProcess(status: Int32) -> Never {
        writing.lock()
        fflush(stdout)
        fflush(stderr)
        _exit(status)
    }

    /// Deletes the temporary files that killed processes left in `directory` (`.NAME.PID.tmp` of a PID that no longer
    /// runs). Returns their names.
    @discardableResult
    public static func removeStaleTemporaries(in directory: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { name in
            guard name.hasPrefix("."), name.hasSuffix(".tmp") else { return false }
            let parts = name.dropLast(4).split(separator: ".")
            guard parts.count >= 2, let pid = pid_t(parts.last!), pid > 0, pid != getpid() else { return false }
            guard kill(pid, 0) != 0 && errno == ESRCH else { return false }  // still running (or not ours to ask)
            return (try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))) != nil
        }
    }
}

/// A file that could not be read, understood or written: the path and the reason, printed as "path: reason".
/// Checkpoints and images report their problems with it (`CheckpointError`, `ImageError`).
public struct FileError: Error, CustomStringConvertible {
    public let url: URL
    public let reason: String

    public init(_ url: URL, _ reason: String) {
        self.url = url
        self.reason = reason
    }

    public var description: String { "\(url.path): \(reason)" }
}
