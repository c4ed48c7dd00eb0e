import Foundation
import Tensors

/// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON header mapping each
/// name to {dtype, shape, data_offsets}, then the raw little-endian data. Files are memory-mapped, so a large
/// checkpoint costs address space, not a copy, until its tensors are converted.
public struct SafetensorsFile {
    public struct Entry {
        public let dtype: String
        public let shape: [Int]
        /// Byte range inside the data section.
        public let range: Range<Int>
    }

    public let url: URL
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    public init(contentsOf url: URL) throws {
        self.url = url
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CheckpointError(url, "no such file")
        }
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw CheckpointError(url, "cannot be read: \(error.localizedDescription)")
        }
        guard data.count >= 8 else { throw CheckpointError(url, "is \(data.count) bytes, too short for a header") }
        let headerLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw CheckpointError(
                url, "header claims \(headerLength) bytes but the file has \(data.count - 8) after the length: truncated or not safetensors"
            )
        }
        dataStart = 8 + Int(headerLength)
        let headerJSON: Any
        do {
            headerJSON = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<dataStart))
        } catch {
            throw CheckpointError(url, "header is not valid JSON: not a safetensors file?")
        }
        guard let header = headerJSON as? [String: Any] else { throw CheckpointError(url, "header is not a JSON object") }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        let available = data.count - dataStart
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else { throw CheckpointError(url, "header entry \(name) is malformed") }
            guard let width = SafetensorsFile.byteWidth[dtype] else {
                throw CheckpointError(url, "tensor \(name) has unsupported dtype \(dtype)")
            }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= available else {
                throw CheckpointError(
                    url, "tensor \(name) lies at bytes \(offsets[0])..<\(offsets[1]) but the data section has \(available): truncated file")
            }
            guard offsets[1] - offsets[0] == shape.reduce(1, *) * width else {
                throw CheckpointError(url, "tensor \(name) has \(offsets[1] - offsets[0]) bytes for shape \(shape) of \(dtype)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
        }
        self.entries = entries
        self.metadata = metadata
    }

    static let byteWidth = ["F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1]

    public var names: [String] { entries.keys.sorted() }

    /// The named tensor converted to float32 (from F32, F16, BF16, F64 or an integer type).
    public func tensor(_ name: String) throws -> Tensor {
        guard let entry = entries[name] else { throw CheckpointError(url, "has no tensor named \(name)") }
        let out = Tensor(uninitializedShape: entry.shape)
        let dst = out.pointer
        let n = out.count
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let src = raw.baseAddress! + dataStart + entry.range.lowerBound
            switch entry.dtype {
            case "F32": memcpy(dst, src, n * 4)
            case "F64": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
            case "F16": for i in 0..<n { dst[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
            case "BF16":
                for i in 0..<n { dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16) }
            case "I64": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)) }
            case "I32": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
            case "I16": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 2, as: Int16.self)) }
            case "I8": for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
            default: for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
            }
        }
        return out
    }

    /// The named integer tensor as Ints (labels, indices).
    public func integers(_ name: String) throws -> [Int] {
        try tensor(name).toArray().map { Int($0) }
    }

    /// Every tensor, converted to float32.
    public func allTensors() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for name in entries.keys { out[name] = try tensor(name) }
        return out
    }
}

public enum Safetensors {
    /// Writes float32 tensors to `url` as safetensors, through a temporary file renamed into place, so a reader
    /// never sees a half-written file.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL) throws {
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
