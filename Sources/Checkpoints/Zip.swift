import CCompression
import Foundation
import Tensors

/// A zip archive as `torch.save` and `numpy.savez` write it: stored or deflated members, ZIP64 records when large.
///
/// Our own reader rather than ZIPFoundation's because the archive is untrusted input: every size and offset here is
/// checked, in arithmetic that cannot overflow, against the bytes the file has, before it is used. ZIPFoundation traps
/// on ZIP64 offsets at or above 2^63, loops forever on a ZIP64 size of 2^62 or a deflate stream running past the end
/// of the file, scans the whole file for a missing central directory, finds a member by a linear search (quadratic
/// over a checkpoint's storages) and skips the CRC-32 of stored members. Here: the end record is looked for in the
/// last 64 KiB only, members are found through a dictionary, a member inflates into exactly the size its directory
/// entry declares (no more: a deflate bomb stops there; that size is checked against free memory first), and its
/// CRC-32 is compared.
public struct ZipArchive {
    public struct Member: Sendable {
        public let name: String
        /// Uncompressed size, as the central directory declares it.
        public let size: Int
        let compressedSize: Int
        /// 0 stored, 8 deflated.
        let method: Int
        let flags: Int
        let crc: UInt32
        let localHeader: Int
    }

    public let url: URL
    /// In the central directory's order.
    public let members: [Member]
    private let index: [String: Int]
    private let bytes: Data

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    public init(_ url: URL) throws {
        self.url = url
        do {
            bytes = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw CheckpointError(url, "cannot be read: \(error.localizedDescription)")
        }
        do {
            members = try bytes.withUnsafeBytes { try Self.centralDirectory(Reader(raw: $0)) }
        } catch let failure as Failure {
            throw CheckpointError(url, "is not a readable zip: \(failure.description)")
        }
        var index: [String: Int] = [:]
        for (i, member) in members.enumerated() {
            guard index.updateValue(i, forKey: member.name) == nil else {
                throw CheckpointError(url, "is not a readable zip: it names the member \(member.name) twice")
            }
        }
        self.index = index
    }

    public subscript(name: String) -> Member? { index[name].map { members[$0] } }

    /// The member's bytes, inflated and checked against its CRC-32; a member larger than the memory free now, one
    /// that inflates to another size than it declares, or a corrupt one is an error naming the archive and member.
    public func contents(of member: Member) throws -> Data {
        func fail(_ why: String) -> CheckpointError { CheckpointError(url, "member \(member.name): \(why)") }
        guard member.flags & 1 == 0 else { throw fail("encrypted, which is not read") }
        guard member.method == 0 || member.method == 8 else {
            throw fail("compressed with method \(member.method); only stored (0) and deflate (8) are read")
        }
        // Nothing is allocated before the declared sizes are checked against the file and free memory.
        let start: Int
        do {
            start = try bytes.withUnsafeBytes { try Self.dataStart(member, in: Reader(raw: $0)) }
            if member.method == 0, member.compressedSize != member.size {
                throw Failure(description: "stored with \(member.compressedSize) bytes but declares \(member.size)")
            }
        } catch let failure as Failure {
            throw fail(failure.description)
        }
        // Deflate produces at most about 1032 bytes per input byte: a larger declared size cannot be honest. Weights
        // deflate to no less than about half their size; a member over 16 MiB that claims to grow more than 64-fold
        // is a decompression bomb, not tensors (torch.save and numpy.savez store members uncompressed anyway).
        guard member.method == 0 || member.size / 1032 <= member.compressedSize + 1 else {
            throw fail("declares \(member.size) bytes from \(member.compressedSize) deflated ones, more than deflate can produce: corrupt")
        }
        guard member.method == 0 || member.size <= 16 << 20 || member.size / 64 <= member.compressedSize else {
            throw fail(
                "would inflate \(member.compressedSize) bytes to \(member.size), more than 64-fold: a decompression bomb, not tensors")
        }
        let free = SystemMemory.available
        guard member.size <= free else {
            throw fail("declares \(member.size) bytes, more than the \(SystemMemory.describe(free)) of memory free now")
        }
        var out = Data(count: member.size)
        try bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }  // never: the file has at least its end record
            let input = base.advanced(by: start).assumingMemoryBound(to: UInt8.self)
            if member.method == 0 {
                out.withUnsafeMutableBytes { $0.baseAddress?.copyMemory(from: input, byteCount: member.size) }
                return
            }
            var message = [CChar](repeating: 0, count: 256)
            let status = out.withUnsafeMutableBytes {
                vit_inflate_raw(
                    input, member.compressedSize, $0.baseAddress?.assumingMemoryBound(to: UInt8.self), member.size, &message, 256)
            }
            if status != 0 { throw fail(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)) }
        }
        let crc = out.withUnsafeBytes { vit_crc32(0, $0.baseAddress?.assumingMemoryBound(to: UInt8.self), $0.count) }
        guard crc == member.crc else {
            throw fail(String(format: "fails its CRC-32 (%08x, the directory says %08x): corrupt", crc, member.crc))
        }
        return out
    }

    /// The member's bytes, or nil when the archive has no such member.
    public func contents(of name: String) throws -> Data? {
        try self[name].map { try contents(of: $0) }
    }

    /// Little-endian fields at checked offsets of the file's bytes.
    struct Reader {
        let raw: UnsafeRawBufferPointer
        var count: Int { raw.count }

        /// Throws unless `length` bytes from `offset` lie in the file.
        func check(_ offset: Int, _ length: Int, _ what: @autoclosure () -> String) throws {
            guard offset >= 0, length >= 0, offset <= count, length <= count - offset else {
                throw Failure(
                    description:
                        "\(what()) (\(length) bytes at offset \(offset)) lies outside the file's \(count) bytes: truncated or corrupt")
            }
        }
        func u16(_ at: Int) -> Int { Int(raw.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian) }
        func u32(_ at: Int) -> Int { Int(raw.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian) }
        func u64(_ at: Int) -> UInt64 { raw.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian }
    }

    /// A 64-bit size or offset from the file as an Int, refused when no real archive could hold it.
    static func int(_ value: UInt64, _ what: String) throws -> Int {
        guard value < 1 << 62 else { throw Failure(description: "\(what) is \(value): corrupt") }
        return Int(value)
    }

    static let endSignature = 0x0605_4B50, zip64EndSignature = 0x0606_4B50, zip64LocatorSignature = 0x0706_4B50
    static let directorySignature = 0x0201_4B50, localSignature = 0x0403_4B50

    static func centralDirectory(_ file: Reader) throws -> [Member] {
        let n = file.count
        guard n >= 22 else { throw Failure(description: "\(n) bytes are too few for a zip: truncated") }
        // The end record is in the last 22 + 65,535 bytes (its comment is at most 65,535 long).
        var end = -1
        var p = n - 22
        while p >= max(0, n - 22 - 0xFFFF) {
            if file.u32(p) == endSignature {
                end = p
                break
            }
            p -= 1
        }
        guard end >= 0 else {
            throw Failure(description: "no end-of-central-directory record in its last 64 KiB: truncated (an interrupted download?)")
        }
        var count = file.u16(end + 10), size = file.u32(end + 12), offset = file.u32(end + 16)
        if count == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
            let locator = end - 20
            guard locator >= 0, file.u32(locator) == zip64LocatorSignature else {
                throw Failure(description: "its end record points to ZIP64 records that are missing")
            }
            let record = try int(file.u64(locator + 8), "the ZIP64 end record's offset")
            try file.check(record, 56, "the ZIP64 end record")
            guard file.u32(record) == zip64EndSignature else { throw Failure(description: "no ZIP64 end record where its locator points") }
            count = try int(file.u64(record + 32), "the member count")
            size = try int(file.u64(record + 40), "the central directory's size")
            offset = try int(file.u64(record + 48), "the central directory's offset")
        }
        try file.check(offset, size, "the central directory")
        guard count <= size / 46 else {
            throw Failure(description: "declares \(count) members, more than its \(size)-byte central directory can hold")
        }
        var members: [Member] = []
        members.reserveCapacity(count)
        var p2 = offset
        let directoryEnd = offset + size
        for i in 0..<count {
            try file.check(p2, 46, "directory entry \(i)")
            guard p2 + 46 <= directoryEnd, file.u32(p2) == directorySignature else {
                throw Failure(description: "directory entry \(i) at offset \(p2) is not one: corrupt")
            }
            let nameLength = file.u16(p2 + 28), extraLength = file.u16(p2 + 30), commentLength = file.u16(p2 + 32)
            let variable = nameLength + extraLength + commentLength
            try file.check(p2 + 46, variable, "directory entry \(i)'s name and extra fields")
            guard p2 + 46 + variable <= directoryEnd else {
                throw Failure(description: "directory entry \(i) runs past the central directory: corrupt")
            }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: file.raw[(p2 + 46)..<(p2 + 46 + nameLength)]), as: UTF8.self)
            var sizes = [file.u32(p2 + 24), file.u32(p2 + 20), file.u32(p2 + 42)]  // uncompressed, compressed, local header
            // ZIP64's extra field (id 1) holds, in this order, each of the three that reads 0xFFFFFFFF above.
            var q = p2 + 46 + nameLength
            let extraEnd = q + extraLength
            while q + 4 <= extraEnd {
                let id = file.u16(q), length = file.u16(q + 2)
                guard q + 4 + length <= extraEnd else {
                    throw Failure(description: "member \(name)'s extra field runs past its end: corrupt")
                }
                if id == 1 {
                    var r = q + 4
                    for k in sizes.indices where sizes[k] == 0xFFFF_FFFF {
                        guard r + 8 <= q + 4 + length else {
                            throw Failure(description: "member \(name)'s ZIP64 field is too short: corrupt")
                        }
                        sizes[k] = try int(file.u64(r), "member \(name)'s ZIP64 size or offset")
                        r += 8
                    }
                }
                q += 4 + length
            }
            members.append(
                Member(
                    name: name, size: sizes[0], compressedSize: sizes[1], method: file.u16(p2 + 10), flags: file.u16(p2 + 8),
                    crc: UInt32(file.u32(p2 + 16)), localHeader: sizes[2]))
            p2 += 46 + variable
        }
        return members
    }

    /// Where the member's data starts, after its local header, with the data checked to lie in the file.
    static func dataStart(_ member: Member, in file: Reader) throws -> Int {
        try file.check(member.localHeader, 30, "member \(member.name)'s local header")
        guard file.u32(member.localHeader) == localSignature else {
            throw Failure(description: "no local header at offset \(member.localHeader): corrupt")
        }
        let start = member.localHeader + 30 + file.u16(member.localHeader + 26) + file.u16(member.localHeader + 28)
        try file.check(start, member.compressedSize, "its data")
        return start
    }
}

extension Data {
    /// CRC-32 (zip's), continuing `crc`.
    public func crc32(continuing crc: UInt32 = 0) -> UInt32 {
        withUnsafeBytes { vit_crc32(crc, $0.baseAddress?.assumingMemoryBound(to: UInt8.self), $0.count) }
    }
}
