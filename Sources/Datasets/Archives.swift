import CCompression
import Foundation
import Tensors

/// gzip streams, through zlib.
public enum Gzip {
    public static func decompress(_ data: Data, source: URL) throws -> Data {
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = data.withUnsafeBytes { raw in
            vit_gunzip(raw.bindMemory(to: UInt8.self).baseAddress, data.count, &out, &size, &message, 256)
        }
        guard status == 0, let out else { throw FileError(source, "cannot be decompressed: \(String(cString: message))") }
        defer { free(out) }
        return Data(bytes: out, count: size)
    }
}

/// The regular files of a tar archive (POSIX ustar, with GNU long names), in archive order.
public enum Tar {
    public static func files(_ data: Data, source: URL) throws -> [(path: String, contents: Data)] {
        var files: [(String, Data)] = []
        var offset = 0
        var longName: String?
        let bytes = [UInt8](data)
        func text(_ start: Int, _ length: Int) -> String {
            let field = bytes[start..<(start + length)]
            return String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
        }
        while offset + 512 <= bytes.count {
            if bytes[offset..<(offset + 512)].allSatisfy({ $0 == 0 }) { break }  // end-of-archive blocks
            let sizeText = text(offset + 124, 12).trimmingCharacters(in: .whitespaces)
            guard let size = Int(sizeText, radix: 8) else {
                throw FileError(source, "tar header at byte \(offset) has an unreadable size '\(sizeText)': not a tar archive?")
            }
            let type = bytes[offset + 156]
            var name = text(offset, 100)
            let prefix = text(offset + 345, 155)
            if !prefix.isEmpty && text(offset + 257, 5) == "ustar" { name = prefix + "/" + name }
            let start = offset + 512
            guard start + size <= bytes.count else {
                throw FileError(source, "member \(name) needs \(size) bytes past the end of the archive: truncated")
            }
            let contents = data.subdata(in: (data.startIndex + start)..<(data.startIndex + start + size))
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
