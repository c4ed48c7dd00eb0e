import Datasets
import Foundation
import Images
import Tensors

/// Decodes and preprocesses image files, by default on a background thread while the caller computes, handing out
/// batches in file order. Files that fail are reported with their batch, not thrown: one bad photo never stops a
/// folder.
public final class BatchLoader: Sequence, IteratorProtocol {
    public struct Batch {
        /// Files that decoded, in order, and their preprocessed images stacked [B, 3, S, S] (nil if none did).
        public let files: [URL]
        public let images: Tensor?
        /// Files that failed, with why.
        public let failures: [ImageError]
    }

    private let files: [URL]
    private let batchSize: Int
    private let transform: @Sendable (RGBImage) -> Tensor
    private var produced = 0  // files handed to batches so far (producer side)
    private var queue: PrefetchQueue<Batch>!

    /// `prefetch` batches are prepared ahead of the one being consumed. With `background` false, each batch is
    /// prepared when asked for, on the caller's thread.
    public init(
        files: [URL], batchSize: Int, prefetch: Int = 2, background: Bool = true,
        transform: @escaping @Sendable (RGBImage) -> Tensor
    ) {
        precondition(batchSize > 0, "batch size must be positive")
        self.files = files
        self.batchSize = batchSize
        self.transform = transform
        queue = PrefetchQueue(name: "SwiftViT image loader", depth: prefetch, background: background) { [weak self] in
            self?.produce()
        }
    }

    deinit { queue.cancel() }

    /// Decodes and preprocesses the next chunk of files, or nil when all are done.
    private func produce() -> Batch? {
        guard produced < files.count else { return nil }
        let chunk = files[produced..<Swift.min(produced + batchSize, files.count)]
        produced += chunk.count
        var decoded: [URL] = [], tensors: [Tensor] = [], failures: [ImageError] = []
        for file in chunk {
            do {
                tensors.append(transform(try RGBImage(contentsOf: file)))
                decoded.append(file)
            } catch let error as ImageError {
                failures.append(error)
            } catch {
                failures.append(ImageError(file, "\(error)"))
            }
        }
        return Batch(files: decoded, images: tensors.isEmpty ? nil : Tensor.stack(tensors), failures: failures)
    }

    public func next() -> Batch? { queue.next() }

    /// Image files under the given paths: files as given, folders searched recursively for .jpg/.jpeg/.png, sorted.
    /// Paths that do not exist come back as failures.
    public static func imageFiles(_ paths: [String]) -> (files: [URL], missing: [ImageError]) {
        var files: [URL] = [], missing: [ImageError] = []
        let extensions: Set<String> = ["jpg", "jpeg", "png"]
        for path in paths {
            let url = URL(fileURLWithPath: path)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                missing.append(ImageError(url, "no such file or folder"))
                continue
            }
            if !isDirectory.boolValue { files.append(url); continue }
            let found = (FileManager.default.enumerator(at: url, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? [])
                .filter { extensions.contains($0.pathExtension.lowercased()) }
                .sorted { $0.path < $1.path }
            files += found
        }
        return (files, missing)
    }
}
