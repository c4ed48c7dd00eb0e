import Foundation

/// Writes a file through a temporary sibling and a rename: the destination is either the old file or the new one.
public enum AtomicFile {
    public static func write(_ data: Data, to url: URL) throws {
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
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
