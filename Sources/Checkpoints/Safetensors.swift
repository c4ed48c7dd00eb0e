import Foundation
import Tensors

/// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON header mapping each
/// name to {dtype, shape, data_offsets}, then the raw little-endian data.
///
/// Each tensor is read with `pread` straight into its own storage, converted on the way if asked: the file is never
/// mapped, so loading a model costs its weights once, not the weights plus the file's pages (which count towards a
/// process's resident memory for as long as a mapping holds them).
public final class SafetensorsFile {
    public struct Entry {
        public let dtype: String
        public let shape: [Int]
        /// Byte range inside the data section.
        public let range: Range<Int>
    }

    public let url: URL
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let descriptor: Int32
    private let dataStart: Int

    public init(contentsOf url: URL) throws {
        self.url = url
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CheckpointError(url, "no such file")
        }
        let descriptor = open(url.path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw CheckpointError(url, "cannot be read: \(String(cString: strerror(errno)))") }
        var ok = false
        defer { if !ok { close(descriptor) } }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw CheckpointError(url, "cannot be read: \(String(cString: strerror(errno)))") }
        let fileSize = Int(status.st_size)
        guard fileSize >= 8 else { throw CheckpointError(url, "is \(fileSize) bytes, too short for a header") }
        var lengthBytes = UInt64(0)
        try Self.read(descriptor, into: &lengthBytes, count: 8, at: 0, url: url)
        let headerLength = UInt64(littleEndian: lengthBytes)
        guard headerLength <= Self.maxHeaderBytes else {
            throw CheckpointError(url, "header claims \(headerLength) bytes, more than the format's limit of \(Self.maxHeaderBytes)")
        }
        guard headerLength <= UInt64(fileSize - 8) else {
            throw CheckpointError(
                url, "header claims \(headerLength) bytes but the file has \(fileSize - 8) after the length: truncated or not safetensors")
        }
        let dataStart = 8 + Int(headerLength)
        var headerData = Data(count: Int(headerLength))
        try headerData.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { try Self.read(descriptor, into: base, count: buffer.count, at: 8, url: url) }
        }
        let header: SafetensorsHeader
        do {
            header = try headerData.withUnsafeBytes { try SafetensorsHeader($0.bindMemory(to: UInt8.self)) }
        } catch {
            throw CheckpointError(url, "\(error): not a safetensors file?")
        }
        headerData = Data()
        var entries: [String: Entry] = [:]
        entries.reserveCapacity(header.entries.count)
        let available = fileSize - dataStart
        for (name, raw) in header.entries {
            let (dtype, shape, offsets) = (raw.dtype, raw.shape, raw.offsets)
            guard offsets.count == 2 else { throw CheckpointError(url, "header entry \(name) has \(offsets.count) data_offsets, not 2") }
            guard shape.count <= Tensor.maxRank else {
                throw CheckpointError(url, "tensor \(name) has rank \(shape.count), above the engine's limit of \(Tensor.maxRank)")
            }
            guard let elements = Shape.checkedCount(shape) else {
                throw CheckpointError(url, "tensor \(name) has shape \(shape): a dimension is negative or the product overflows")
            }
            guard let width = SafetensorsFile.byteWidth[dtype] else {
                throw CheckpointError(url, "tensor \(name) has unsupported dtype \(dtype)")
            }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= available else {
                throw CheckpointError(
                    url, "tensor \(name) lies at bytes \(offsets[0])..<\(offsets[1]) but the data section has \(available): truncated file")
            }
            guard elements <= available / width, offsets[1] - offsets[0] == elements * width else {
                throw CheckpointError(url, "tensor \(name) has \(offsets[1] - offsets[0]) bytes for shape \(shape) of \(dtype)")
            }
            guard entries.updateValue(Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1]), forKey: name) == nil else {
                throw CheckpointError(url, "tensor \(name) appears twice in the header")
            }
        }
        let metadata = header.metadata
        self.entries = entries
        self.metadata = metadata
        self.descriptor = descriptor
        self.dataStart = dataStart
        ok = true
    }

    deinit { close(descriptor) }

    /// Reads exactly `count` bytes at `offset`, through short reads and interrupts.
    private static func read(_ descriptor: Int32, into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int, url: URL) throws {
        var done = 0
        while done < count {
            let n = pread(descriptor, buffer + done, count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw CheckpointError(url, n == 0 ? "ends early: truncated file" : "cannot be read: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    /// The format's own cap on the header (safetensors refuses larger ones): a small file must not make the reader
    /// parse gigabytes of JSON.
    public static let maxHeaderBytes: UInt64 = 100_000_000

    static let byteWidth = ["F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1]

    public var names: [String] { entries.keys.sorted() }

    /// The named tensor as float32 (from F32, F16, BF16, F64 or an integer type), or as `dtype`.
    public func tensor(_ name: String, as dtype: DType = .float32) throws -> Tensor {
        guard let entry = entries[name] else { throw CheckpointError(url, "has no tensor named \(name)") }
        if entry.dtype == "BF16" && dtype == .bfloat16 {
            let out = Tensor(uninitializedShape: entry.shape, dtype: .bfloat16)
            try Self.read(descriptor, into: out.raw, count: entry.range.count, at: dataStart + entry.range.lowerBound, url: url)
            return out
        }
        let out = Tensor(uninitializedShape: entry.shape)
        let dst = out.pointer
        let n = out.count
        if entry.dtype == "F32" {
            try Self.read(descriptor, into: dst, count: n * 4, at: dataStart + entry.range.lowerBound, url: url)
        } else {
            let bytes = UnsafeMutableRawPointer.allocate(byteCount: max(entry.range.count, 1), alignment: 16)
            defer { bytes.deallocate() }
            try Self.read(descriptor, into: bytes, count: entry.range.count, at: dataStart + entry.range.lowerBound, url: url)
            let src = UnsafeRawPointer(bytes)
            switch entry.dtype {
            case "F64": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
            case "F16": for i in 0..<n { dst[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
            case "BF16": for i in 0..<n { dst[i] = BFloat16.float(src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) }
            case "I64": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)) }
            case "I32": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
            case "I16": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 2, as: Int16.self)) }
            case "I8": for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
            default: for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
            }
        }
        return dtype == .float32 ? out : out.converted(to: dtype)
    }

    /// Whether the file holds `Safetensors.checksumKey`; if it does, its data section and metadata are read and
    /// checked against it, and a mismatch is an error naming the file (a byte changed since it was written).
    @discardableResult
    public func verifyChecksum() throws -> Bool {
        guard let stated = metadata[Safetensors.checksumKey] else { return false }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw CheckpointError(url, "cannot be read: \(String(cString: strerror(errno)))") }
        var crc: UInt32 = 0
        var offset = dataStart
        var chunk = Data(count: 1 << 22)
        while offset < Int(status.st_size) {
            let count = min(chunk.count, Int(status.st_size) - offset)
            try chunk.withUnsafeMutableBytes { buffer in
                try Self.read(descriptor, into: buffer.baseAddress!, count: count, at: offset, url: url)
            }
            crc = chunk.prefix(count).crc32(continuing: crc)
            offset += count
        }
        guard String(Safetensors.checksum(data: crc, metadata: metadata)) == stated else {
            throw CheckpointError(url, "fails its checksum (\(Safetensors.checksumKey)): the file changed since it was written")
        }
        return true
    }

    /// The named integer tensor as Ints (labels, indices).
    public func integers(_ name: String) throws -> [Int] {
        try tensor(name).toArray().map { Int($0) }
    }

    /// Every tensor, as float32; `matrices` sets the dtype of those of rank 2 and more, each converted as it is read
    /// so that no float32 copy of the whole checkpoint exists at once.
    public func allTensors(matrices: DType = .float32) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, entry) in entries { out[name] = try tensor(name, as: entry.shape.count >= 2 ? matrices : .float32) }
        return out
    }
}

public enum Safetensors {
    /// The metadata entry of `write(..., checksum: true)`: the CRC-32 (decimal) of the data section, continued over
    /// every other metadata entry (key, then value, in key order), so that a flipped byte anywhere but the layout
    /// of the header is caught (`SafetensorsFile.verifyChecksum`).
    public static let checksumKey = "swiftvit_crc32"

    /// The checksum of `checksumKey` over data bytes (already summed into `crc`) and `metadata`.
    static func checksum(data crc: UInt32, metadata: [String: String]) -> UInt32 {
        var crc = crc
        for key in metadata.keys.sorted() where key != checksumKey {
            crc = Data(key.utf8).crc32(continuing: crc)
            crc = Data(metadata[key]!.utf8).crc32(continuing: crc)
        }
        return crc
    }

    /// Writes float32 tensors to `url` as safetensors, through a temporary file renamed into place, so a reader
    /// never sees a half-written file. With `checksum`, the metadata gets `checksumKey`.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], checksum: Bool = false, to url: URL) throws {
        var metadata = metadata
        if checksum {
            var crc: UInt32 = 0
            for name in tensors.keys.sorted() {
                let t = tensors[name]!
                crc = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: t.pointer), count: t.count * 4, deallocator: .none)
                    .crc32(continuing: crc)
            }
            metadata[checksumKey] = String(Self.checksum(data: crc, metadata: metadata))
        }
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let t = tensors[name]!
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + t.count * 4]] as [String: Any]
            offset += t.count * 4
        }
        var headerData = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while headerData.count % 8 != 0 { headerData.append(0x20) }  // pad with spaces to keep data 8-byte aligned
        var file = Data(capacity: 8 + headerData.count + offset)
        withUnsafeBytes(of: UInt64(headerData.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(headerData)
        for name in names {
            let t = tensors[name]!
            file.append(UnsafeBufferPointer(start: t.pointer, count: t.count))
        }
        try AtomicFile.write(file, to: url)
    }
}

/// A checkpoint problem, naming the file.
public typealias CheckpointError = FileError
