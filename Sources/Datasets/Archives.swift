import CCompression
import Foundation
import Tensors

/// gzip streams, through zlib.
public enum Gzip {
    /// What a stream may inflate to by default: half of this machine's memory (the data is then held decoded).
    public static var defaultLimit: Int { Int(ProcessInfo.processInfo.physicalMemory / 2) }

    public static func decompress(_ data: Data, source: URL, limit: Int = defaultLimit) throws -> Data {
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = data.withUnsafeBytes { raw in
            vit_gunzip(raw.bindMemory(to: UInt8.self).baseAddress, data.count, limit, &out, &size, &message, 256)
        }
        guard status == 0, let out else { throw FileError(source, "cannot be decompressed: \(String(cString: message))") }
        return Data(bytesNoCopy: out, count: size, deallocator: .free)
    }
}

/// One 512-byte tar header: the member's path (ustar's prefix joined), size and type; nil for an end-of-archive
/// (all-zero) block. `offset` is the header's place in the archive, for the error.
struct TarHeader {
    let name: String
    let size: Int
    let type: UInt8

    static let blockSize = 512

    /// The block's bytes in `block` (512 of them).
    static func parse(_ block: UnsafeBufferPointer<UInt8>, offset: Int, source: URL) throws -> TarHeader? {
        if block.allSatisfy({ $0 == 0 }) { return nil }
        func text(_ start: Int, _ length: Int) -> String {
            String(decoding: block[start..<(start + length)].prefix { $0 != 0 }, as: UTF8.self)
        }
        let sizeText = text(124, 12).trimmingCharacters(in: .whitespaces)
        guard let size = Int(sizeText, radix: 8), size >= 0 else {
            throw FileError(source, "tar header at byte \(offset) has an unreadable size '\(sizeText)': not a tar archive?")
        }
        var name = text(0, 100)
        let prefix = text(345, 155)
        if !prefix.isEmpty && text(257, 5) == "ustar" { name = prefix + "/" + name }
        return TarHeader(name: name, size: size, type: block[156])
    }

    /// The member's contents and padding, in bytes.
    var paddedSize: Int { (size + 511) / 512 * 512 }
    var isLongName: Bool { type == UInt8(ascii: "L") }
    var isFile: Bool { type == 0 || type == UInt8(ascii: "0") }
}

/// The regular files of a tar archive (POSIX ustar, with GNU long names), in archive order.
public enum Tar {
    public static func files(_ data: Data, source: URL) throws -> [(path: String, contents: Data)] {
        try data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var files: [(String, Data)] = []
            var offset = 0
            var longName: String?
            while bytes.count - offset >= 512 {
                guard
                    let header = try TarHeader.parse(
                        UnsafeBufferPointer(rebasing: bytes[offset..<(offset + 512)]), offset: offset, source: source)
                else { break }  // end-of-archive blocks
                let start = offset + 512
                guard header.size <= bytes.count - start else {
                    throw FileError(source, "member \(header.name) needs \(header.size) bytes past the end of the archive: truncated")
                }
                // A slice: it shares the archive's bytes (no copy of every member while the archive is held).
                let contents = data[(data.startIndex + start)..<(data.startIndex + start + header.size)]
                if header.isLongName {
                    longName = String(decoding: contents.prefix { $0 != 0 }, as: UTF8.self)
                } else {
                    if header.isFile { files.append((longName ?? header.name, contents)) }
                    longName = nil
                }
                offset = start + header.paddedSize
            }
            return files
        }
    }
}

/// A tar archive read one member at a time from its file (memory: one member), as a stream of shards is read.
public final class TarReader {
    public let source: URL
    private let handle: FileHandle
    private var offset = 0
    /// The largest member accepted (a header claiming more is an error, not an allocation).
    public let memberLimit: Int

    public init(_ url: URL, memberLimit: Int = 1 << 30) throws {
        guard FileManager.default.fileExists(atPath: url.path) else { throw FileError(url, "no such file") }
        do { handle = try FileHandle(forReadingFrom: url) } catch { throw FileError(url, "cannot be read: \(error.localizedDescription)") }
        (source, self.memberLimit) = (url, memberLimit)
    }

    deinit { try? handle.close() }

    /// The next regular file, or nil at the end of the archive.
    public func next() throws -> (path: String, contents: Data)? {
        var longName: String?
        while true {
            guard let block = try read(TarHeader.blockSize, allowingEnd: true) else { return nil }
            let headerOffset = offset - TarHeader.blockSize
            guard
                let header = try block.withUnsafeBytes({
                    try TarHeader.parse($0.bindMemory(to: UInt8.self), offset: headerOffset, source: source)
                })
            else { return nil }
            guard header.size <= memberLimit else {
                throw FileError(source, "member \(header.name) claims \(header.size) bytes, more than the \(memberLimit) a member may have")
            }
            guard let contents = try read(header.size, allowingEnd: false) else { return nil }
            _ = try read(header.paddedSize - header.size, allowingEnd: false)
            if header.isLongName {
                longName = String(decoding: contents.prefix { $0 != 0 }, as: UTF8.self)
                continue
            }
            if header.isFile { return (longName ?? header.name, contents) }
            longName = nil
        }
    }

    /// `count` bytes, or nil at a clean end (nothing left, when `allowingEnd`); fewer is a truncated archive.
    private func read(_ count: Int, allowingEnd: Bool) throws -> Data? {
        guard count > 0 else { return Data() }
        let data: Data
        do { data = try handle.read(upToCount: count) ?? Data() } catch {
            throw FileError(source, "cannot be read at byte \(offset): \(error.localizedDescription)")
        }
        if data.isEmpty && allowingEnd { return nil }
        guard data.count == count else {
            throw FileError(source, "ends at byte \(offset + data.count) inside a member that needs \(count) bytes: truncated")
        }
        offset += count
        return data
    }
}
