import Foundation
import Tensors
import ZIPFoundation

/// NumPy `.npz` archives (a zip of `.npy` files), as the original JAX ViT and big_vision publish weights.
public enum Npz {
    /// Every array in the archive as float32 tensors, keyed by name without the `.npy` suffix.
    public static func read(_ url: URL) throws -> [String: Tensor] {
        guard FileManager.default.fileExists(atPath: url.path) else { throw CheckpointError(url, "no such file") }
        let archive: Archive
        do {
            archive = try Archive(url: url, accessMode: .read)
        } catch {
            throw CheckpointError(url, "is not a readable zip archive (npz): \(error)")
        }
        var tensors: [String: Tensor] = [:]
        for entry in archive where entry.type == .file && entry.path.hasSuffix(".npy") {
            var data = Data()
            do {
                _ = try archive.extract(entry, skipCRC32: false) { data.append($0) }
            } catch {
                throw CheckpointError(url, "member \(entry.path) could not be extracted: \(error)")
            }
            let name = String(entry.path.dropLast(4))
            tensors[name] = try Npy.parse(data, name: "\(url.path)/\(entry.path)")
        }
        if tensors.isEmpty { throw CheckpointError(url, "holds no .npy arrays") }
        return tensors
    }
}

/// One `.npy` array: magic, version, a Python-literal header {descr, fortran_order, shape}, raw data.
public enum Npy {
    public static func parse(_ data: Data, name: String) throws -> Tensor {
        let bytes = [UInt8](data)
        func fail(_ why: String) -> CheckpointError { CheckpointError(URL(fileURLWithPath: name), why) }
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw fail("is not a .npy array")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        if major == 1 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else {
            guard bytes.count >= 12 else { throw fail("truncated .npy header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        }
        guard headerStart + headerLength <= bytes.count,
            let header = String(bytes: bytes[headerStart..<(headerStart + headerLength)], encoding: .ascii)
        else {
            throw fail("truncated .npy header")
        }
        guard let descr = field(header, "descr"), let shapeText = field(header, "shape") else {
            throw fail("unreadable .npy header: \(header)")
        }
        let fortran = field(header, "fortran_order") == "True"
        let shape = shapeText.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let width: Int
        switch descr {
        case "<f4", "<f8", "<f2", "<i8", "<i4", "|u1", "|b1": width = Int(descr.dropFirst(2))!
        default: throw fail("unsupported .npy dtype \(descr)")
        }
        let start = headerStart + headerLength
        guard bytes.count - start >= count * width else {
            throw fail("holds \(bytes.count - start) data bytes, shape \(shape) of \(descr) needs \(count * width): truncated")
        }
        let tensor = Tensor(uninitializedShape: fortran ? shape.reversed() : shape)
        let dst = tensor.pointer
        bytes.withUnsafeBytes { raw in
            let src = raw.baseAddress! + start
            for i in 0..<count {
                switch descr {
                case "<f4": dst[i] = src.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
                case "<f8": dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self))
                case "<f2": dst[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                case "<i8": dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                case "<i4": dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
                default: dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self))
                }
            }
        }
        // Fortran order is column-major: the data read as the reversed shape, then axes reversed back.
        return fortran ? tensor.permute(Array((0..<shape.count).reversed())) : tensor
    }

    /// The text of `'key': value` in the header dict (a quoted string, a tuple's inside, or a bare word).
    private static func field(_ header: String, _ key: String) -> String? {
        guard let range = header.range(of: "'\(key)':") else { return nil }
        let rest = header[range.upperBound...].drop { $0 == " " }
        if rest.first == "'" {
            return String(rest.dropFirst().prefix { $0 != "'" })
        }
        if rest.first == "(" {
            return String(rest.dropFirst().prefix { $0 != ")" })
        }
        return String(rest.prefix { $0 != "," && $0 != "}" }).trimmingCharacters(in: .whitespaces)
    }
}
