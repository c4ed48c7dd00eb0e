import Foundation
import Tensors

/// NumPy `.npz` archives (a zip of `.npy` files), as the original JAX ViT and big_vision publish weights.
public enum Npz {
    /// Every array in the archive as float32 tensors, keyed by name without the `.npy` suffix. `accept` sees the
    /// names first (from the zip directory, before anything is inflated) and may refuse the file by throwing.
    public static func read(_ url: URL, accept: ([String]) throws -> Void = { _ in }) throws -> [String: Tensor] {
        guard FileManager.default.fileExists(atPath: url.path) else { throw CheckpointError(url, "no such file") }
        let archive = try ZipArchive(url)
        let members = archive.members.filter { $0.name.hasSuffix(".npy") }
        try accept(members.map { String($0.name.dropLast(4)) })
        // A small archive can declare (and deflate to) gigabytes: refuse more than the machine has free before
        // extracting anything (each member then inflates to exactly its declared size, its CRC-32 checked).
        let declared = members.reduce(0) { $0 > Int.max - $1.size ? Int.max : $0 + $1.size }
        let free = SystemMemory.available
        guard declared <= free else {
            throw CheckpointError(
                url, "declares \(declared) bytes of arrays, more than the \(SystemMemory.describe(free)) of memory free now")
        }
        var tensors: [String: Tensor] = [:]
        for member in members {
            let data = try archive.contents(of: member)
            tensors[String(member.name.dropLast(4))] = try Npy.parse(data, name: "\(url.path)/\(member.name)")
        }
        if tensors.isEmpty { throw CheckpointError(url, "holds no .npy arrays") }
        return tensors
    }
}

/// One `.npy` array: magic, version, a Python-literal header {descr, fortran_order, shape}, raw data.
public enum Npy {
    public static func parse(_ data: Data, name: String) throws -> Tensor {
        func fail(_ why: String) -> CheckpointError { CheckpointError(URL(fileURLWithPath: name), why) }
        return try data.withUnsafeBytes { raw -> Tensor in
            let bytes = raw.bindMemory(to: UInt8.self)
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
            guard headerLength <= bytes.count - headerStart,
                let header = String(bytes: bytes[headerStart..<(headerStart + headerLength)], encoding: .ascii)
            else {
                throw fail("truncated .npy header")
            }
            guard let descr = field(header, "descr"), let shapeText = field(header, "shape") else {
                throw fail("unreadable .npy header: \(header.prefix(200))")
            }
            let fortran = field(header, "fortran_order") == "True"
            let shape = try dimensions(shapeText, fail)
            let width: Int
            switch descr {
            case "<f4", "<f8", "<f2", "<i8", "<i4", "|u1", "|b1": width = Int(descr.dropFirst(2))!
            default: throw fail("unsupported .npy dtype \(descr)")
            }
            let start = headerStart + headerLength
            let count = shape.reduce(1, *)  // bounded by `dimensions`
            guard count <= (bytes.count - start) / width else {
                throw fail("holds \(bytes.count - start) data bytes, fewer than shape \(shape) of \(descr) needs: truncated")
            }
            let tensor = Tensor(uninitializedShape: fortran ? shape.reversed() : shape)
            let dst = tensor.pointer
            let src = UnsafeRawPointer(bytes.baseAddress!) + start
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
            // Fortran order is column-major: the data read as the reversed shape, then axes reversed back.
            return fortran ? tensor.permute(Array((0..<shape.count).reversed())) : tensor
        }
    }

    /// The dimensions of a shape tuple's inside ("", "17", "1, 17", "2, 3,"; Python 2's "1L" too), each a
    /// non-negative integer, with a product that fits in memory's range. Anything else is an error.
    static func dimensions(_ text: String, _ fail: (String) -> CheckpointError) throws -> [Int] {
        var parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.last == "" { parts.removeLast() }  // "(17,)"
        let shape = try parts.map { part in
            let digits = part.hasSuffix("L") ? String(part.dropLast()) : part
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let value = Int(digits) else {
                throw fail("shape (\(text)) has a dimension \"\(part)\" that is not a non-negative integer")
            }
            return value
        }
        guard shape.count <= Tensor.maxRank else {
            throw fail("shape (\(text)) has rank \(shape.count), above the engine's limit of \(Tensor.maxRank)")
        }
        guard Shape.checkedCount(shape) != nil else { throw fail("shape (\(text)) has more elements than any array can") }
        return shape
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
