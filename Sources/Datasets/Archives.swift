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

/// The regular files of a tar archive (POSIX ustar, with GNU long names), in archive order.
public enum Tar {
    public static func files(_ data: Data, source: URL) throws -> [(path: String, contents: Data)] {
        try data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var files: [(String, Data)] = []
            var offset = 0
            var longName: String?
            func text(_ start: Int, _ length: Int) -> String {
                let field = bytes[start..<(start + length)]
                return String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
            }
            while bytes.count - offset >= 512 {
                if bytes[offset..<(offset + 512)].allSatisfy({ $0 == 0 }) { break }  // end-of-archive blocks
                let sizeText = text(offset + 124, 12).trimmingCharacters(in: .whitespaces)
                guard let size = Int(sizeText, radix: 8), size >= 0 else {
                    throw FileError(source, "tar header at byte \(offset) has an unreadable size '\(sizeText)': not a tar archive?")
                }
                let type = bytes[offset + 156]
                var name = text(offset, 100)
                let prefix = text(offset + 345, 155)
                if !prefix.isEmpty && text(offset + 257, 5) == "ustar" { name = prefix + "/" + name }
                let start = offset + 512
                guard size <= bytes.count - start else {
                    throw FileError(source, "member \(name) needs \(size) bytes past the end of the archive: truncated")
                }
                // A slice: it shares the archive's bytes (no copy of every member while the archive is held).
                let contents = data[(data.startIndex + start)..<(data.startIndex + start + size)]
                switch type {
                case UInt8(ascii: "L"):
                    longName = String(decoding: contents.prefix { $0 != 0 }, as: UTF8.self)
                case 0, UInt8(ascii: "0"):
                    files.append((longName ?? name, contents))
                    longName = nil
                default:
                    longName = nil
                }
                offset = start + (size + 511) / 512 * 512
            }
            return files
        }
    }
}
