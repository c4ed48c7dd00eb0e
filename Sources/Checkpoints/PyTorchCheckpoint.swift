import Foundation
import Tensors

/// Files written by `torch.save` (`.pth`, `.pt`, `.bin`, Lightning's `.ckpt`), read without Python and without
/// running anything in them (`Unpickler` refuses every callable a state dict does not need).
///
/// Two containers: since PyTorch 1.6 a zip (`<name>/data.pkl`, one `<name>/data/<key>` file per storage,
/// `<name>/byteorder`); before it, one stream of pickles (magic number, protocol, system info, the object, the storage
/// keys) followed by each storage's element count and bytes. Either way the object holds tensors as views (offset,
/// sizes, strides) into storages, which are materialised here as contiguous float32 tensors.
public enum PyTorchCheckpoint {
    /// The state dict in the file, float32, with the usual wrappers taken off: `{'model': ...}` (DeiT, MAE, HPM),
    /// `{'state_dict': ...}` (Lightning), a `module.` prefix (DistributedDataParallel). Everything else a training
    /// script saved beside the weights (optimizer state, epoch, an `argparse.Namespace`) is read as data and left.
    public static func read(_ url: URL) throws -> [String: Tensor] {
        // A pickle nests containers as deep as it likes (up to `Unpickler.maxContainers`), and Swift releases a nested
        // value recursively: the whole read runs on a thread whose stack holds the deepest (the default 8 MB
        // overflowed at a million nested lists).
        try onLargeStack { try readOnThisThread(url) }
    }

    /// The names `read` would give the file's tensors, from its pickle alone: no tensor's bytes are read or
    /// converted (what telling one kind of model from another needs).
    public static func tensorNames(_ url: URL) throws -> Set<String> {
        try onLargeStack {
            let (_, stateDict) = try open(url)
            let names = stateDict.entries.compactMap { $0.value.tensor != nil ? $0.key.string : nil }
            let prefix = wrapperPrefix(names)
            return Set(names.map { dropping(prefix, from: $0) })
        }
    }

    /// A result handed from the reading thread to the caller.
    private final class Outcome<T>: @unchecked Sendable { var result: Result<T, Error>? }

    static func onLargeStack<T>(_ body: @escaping () throws -> T) throws -> T {
        let outcome = Outcome<T>()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            outcome.result = Result { try body() }
            done.signal()
        }
        thread.stackSize = 1 << 30  // reserved, not committed: pages are touched only as deep as the nesting goes
        thread.start()
        done.wait()
        return try outcome.result!.get()
    }

    /// The file's container and its state dict; a missing file, another format or a file without tensors is a
    /// `CheckpointError` naming it.
    static func open(_ url: URL) throws -> (Container, PickleDict) {
        guard FileManager.default.fileExists(atPath: url.path) else { throw CheckpointError(url, "no such file") }
        let container: Container
        do {
            container = try Container(url)
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(url, "\(error)")
        }
        guard let stateDict = Self.stateDict(in: container.object) else {
            let keys = container.object.dict?.keys.joined(separator: ", ") ?? "not a dict"
            throw CheckpointError(url, "holds no state dict of tensors (top level: \(keys))")
        }
        return (container, stateDict)
    }

    static func readOnThisThread(_ url: URL) throws -> [String: Tensor] {
        let (container, stateDict) = try open(url)
        try checkOutputSize(stateDict, of: url)
        var tensors: [String: Tensor] = [:]
        for (key, value) in stateDict.entries {
            guard let name = key.string, let tensor = value.tensor else { continue }
            do {
                tensors[name] = try container.materialise(tensor)
            } catch let error as CheckpointError {
                throw error  // the archive's own error, naming the file and member
            } catch {
                throw CheckpointError(url, "tensor \(name): \(error)")
            }
        }
        return withoutWrapperPrefix(tensors)
    }

    /// Refuses, before anything is materialised, tensors whose float32 copies would not fit in the memory free now,
    /// or would take more than 8 times the file's size: a tensor repeats no element of its storage but through zero
    /// strides (`expand`), and a storage of bytes becomes 4 times as large as float32, so no honest checkpoint comes
    /// near that, while a tiny file of zero-stride views could ask for gigabytes.
    static func checkOutputSize(_ stateDict: PickleDict, of url: URL) throws {
        var total = 0
        for (key, value) in stateDict.entries {
            guard let tensor = value.tensor else { continue }
            guard let count = Shape.checkedCount(tensor.shape), count <= (Int.max - total) / 4 else {
                throw CheckpointError(url, "tensor \(key.string ?? "?") has shape \(tensor.shape), more elements than any memory holds")
            }
            total += count * 4
        }
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
        let free = SystemMemory.available
        if total > free {
            throw CheckpointError(
                url,
                "its tensors take \(SystemMemory.describe(total)) as float32, more than the \(SystemMemory.describe(free)) of memory free now"
            )
        }
        if total / 8 > fileSize + (8 << 20) {
            throw CheckpointError(
                url,
                "its tensors would take \(SystemMemory.describe(total)) as float32 from a file of \(SystemMemory.describe(fileSize)): views that repeat their elements (zero strides) past what any checkpoint holds"
            )
        }
    }

    /// The dict of tensors: the top object, or the first of the usual wrapper keys that holds one.
    static func stateDict(in object: PickleValue) -> PickleDict? {
        guard let top = object.dict else { return nil }
        func holdsTensors(_ dict: PickleDict) -> Bool {
            let tensors = dict.entries.filter { $0.value.tensor != nil }.count
            return tensors > 0 && tensors * 2 >= dict.entries.count
        }
        if holdsTensors(top) { return top }
        for key in ["state_dict", "model", "model_state_dict", "module", "model_state", "net", "network"] {
            if let inner = top[key]?.dict, holdsTensors(inner) { return inner }
        }
        return nil
    }

    /// A prefix every name shares that no model has: `module.` (DistributedDataParallel), `model.` (Lightning
    /// modules and wrappers that hold the network as `model`), or a run of them. Each name is read once, up to the
    /// prefix (a name made of 50,000 `module.`s costs its length, not a copy per level).
    static func wrapperPrefix(_ names: [String]) -> String {
        guard let first = names.first else { return "" }
        let bytes = Array(first.utf8)
        let wrappers = [Array("module.".utf8), Array("model.".utf8)]
        // Where each wrapper at the start of the first name ends.
        var ends: [Int] = []
        var length = 0
        while let wrapper = wrappers.first(where: {
            bytes.count - length >= $0.count && bytes[length..<(length + $0.count)].elementsEqual($0)
        }) {
            length += wrapper.count
            ends.append(length)
        }
        for name in names.dropFirst() {
            guard let longest = ends.last else { break }
            var shared = 0
            for (a, b) in zip(name.utf8, bytes[0..<longest]) {
                if a != b { break }
                shared += 1
            }
            while let end = ends.last, end > shared { ends.removeLast() }
        }
        return String(decoding: bytes[0..<(ends.last ?? 0)], as: UTF8.self)
    }

    /// `name` without the first `prefix` UTF-8 bytes (a prefix `wrapperPrefix` found: ASCII).
    static func dropping(_ prefix: String, from name: String) -> String {
        String(decoding: name.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
    }

    /// The tensors without their `wrapperPrefix`.
    static func withoutWrapperPrefix(_ tensors: [String: Tensor]) -> [String: Tensor] {
        let prefix = wrapperPrefix(Array(tensors.keys))
        if prefix.isEmpty { return tensors }
        return Dictionary(uniqueKeysWithValues: tensors.map { (dropping(prefix, from: $0.key), $0.value) })
    }

    /// A storage's element type, from its class name (`torch.FloatStorage`).
    enum ElementType: String {
        case float = "FloatStorage", half = "HalfStorage", bfloat16 = "BFloat16Storage", double = "DoubleStorage"
        case long = "LongStorage", int = "IntStorage", short = "ShortStorage", char = "CharStorage", byte = "ByteStorage"
        case bool = "BoolStorage"

        /// From the storage class a persistent id names (`torch.FloatStorage`).
        init?(_ value: PickleValue) {
            let name: String
            switch value {
            case .global(let n): name = n
            case .object(let o): name = o.className
            default: return nil
            }
            self.init(rawValue: String(name.split(separator: ".").last ?? ""))
        }

        var size: Int {
            switch self {
            case .double, .long: return 8
            case .float, .int: return 4
            case .half, .bfloat16, .short: return 2
            case .char, .byte, .bool: return 1
            }
        }

        /// Element `i` of `raw` as a Float.
        func value(_ raw: UnsafeRawPointer, _ i: Int) -> Float {
            switch self {
            case .float: return raw.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
            case .half: return Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
            case .bfloat16: return BFloat16.float(raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
            case .double: return Float(raw.loadUnaligned(fromByteOffset: i * 8, as: Double.self))
            case .long: return Float(raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
            case .int: return Float(raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
            case .short: return Float(raw.loadUnaligned(fromByteOffset: i * 2, as: Int16.self))
            case .char: return Float(raw.load(fromByteOffset: i, as: Int8.self))
            case .byte, .bool: return Float(raw.load(fromByteOffset: i, as: UInt8.self))
            }
        }
    }

    struct Problem: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// The unpickled object and where its storages' bytes are.
    final class Container {
        let object: PickleValue
        /// Storage key -> its bytes.
        private let storageBytes: (String) throws -> Data
        private var cache: [String: Data] = [:]

        init(_ url: URL) throws {
            let handle = try FileHandle(forReadingFrom: url)
            let head = try handle.read(upToCount: 4) ?? Data()
            try handle.close()
            // Storage key -> bytes per element, from the persistent ids met while unpickling.
            var elementSizes: [String: Int] = [:]
            if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
                let archive = try ZipArchive(url)
                guard let pickle = archive.members.filter({ $0.name.hasSuffix("data.pkl") }).min(by: { $0.name.count < $1.name.count })
                else { throw CheckpointError(url, "is a zip without data.pkl: not a PyTorch checkpoint") }
                let prefix = String(pickle.name.dropLast("data.pkl".count))
                if let order = try archive.contents(of: prefix + "byteorder"), String(decoding: order, as: UTF8.self) != "little" {
                    throw CheckpointError(url, "stores big-endian tensors, which are not read")
                }
                // Every storage is held while the tensors are copied out: together they must fit in free memory.
                let storages = archive.members.filter { $0.name.hasPrefix(prefix + "data/") }
                let declared = storages.reduce(0) { $0 > Int.max - $1.size ? Int.max : $0 + $1.size }
                let free = SystemMemory.available
                if declared > free {
                    throw CheckpointError(
                        url, "declares \(declared) bytes of storages, more than the \(SystemMemory.describe(free)) of memory free now")
                }
                var unpickler = Unpickler([UInt8](try archive.contents(of: pickle)))
                object = try unpickler.load(persistentLoad: { try Container.storage($0, sizes: &elementSizes) })
                storageBytes = { key in
                    guard let data = try archive.contents(of: prefix + "data/" + key) else {
                        throw Problem("storage \(key) is missing from the archive")
                    }
                    return data
                }
            } else if head.first == 0x80 {
                let bytes = [UInt8](try Data(contentsOf: url))
                var unpickler = Unpickler(bytes)
                let magic = try unpickler.load()
                guard case .wideInt(let raw) = magic, raw == [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19] else {
                    throw CheckpointError(url, "is a pickle but not a PyTorch checkpoint (no torch.save magic number)")
                }
                _ = try unpickler.load()  // protocol version
                let info = try unpickler.load()
                if case .bool(false) = info.dict?["little_endian"] ?? .bool(true) {
                    throw CheckpointError(url, "stores big-endian tensors, which are not read")
                }
                object = try unpickler.load(persistentLoad: { try Container.storage($0, sizes: &elementSizes) })
                let keys = try unpickler.load().items?.compactMap(\.string) ?? []
                // Then, for each key in that order: the element count (int64) and the elements.
                var offsets: [String: Range<Int>] = [:]
                var position = unpickler.position
                for key in keys {
                    guard position + 8 <= bytes.count else { throw CheckpointError(url, "ends before storage \(key): truncated") }
                    let count = bytes[position..<(position + 8)].reversed().reduce(0) { $0 << 8 | Int($1) }
                    let width = elementSizes[key] ?? 4
                    position += 8
                    guard count >= 0, count <= (bytes.count - position) / width else {
                        throw CheckpointError(url, "storage \(key) claims \(count) elements past the end of the file: truncated")
                    }
                    offsets[key] = position..<(position + count * width)
                    position += count * width
                }
                storageBytes = { key in
                    guard let range = offsets[key] else { throw Problem("storage \(key) is not in the file") }
                    return Data(bytes[range])
                }
            } else {
                throw CheckpointError(url, "is neither a zip nor a pickle: not a PyTorch checkpoint")
            }
        }

        /// A persistent id ('storage', type, key, location, count[, view]) as a storage reference; the element
        /// size of its type is noted by key (the legacy format counts a storage's bytes in elements).
        static func storage(_ pid: PickleValue, sizes: inout [String: Int]) throws -> PickleValue {
            guard let fields = pid.items, fields.count >= 5, fields[0].string == "storage" else {
                throw Problem("unknown persistent id in the pickle")
            }
            if let key = fields[2].string, let element = ElementType(fields[1]) { sizes[key] = element.size }
            return .persistent(pid)
        }

        /// A tensor's view of its storage, copied out contiguous, as float32.
        func materialise(_ tensor: PickleTensor) throws -> Tensor {
            guard case .persistent(let pid) = tensor.storage, let fields = pid.items, let key = fields[2].string
            else { throw Problem("is not backed by a storage") }
            guard let element = ElementType(fields[1]) else { throw Problem("has a storage type that is not read") }
            let data: Data
            if let cached = cache[key] {
                data = cached
            } else {
                data = try storageBytes(key)
                cache[key] = data
            }
            // A legacy view of another storage: (view key, offset, size).
            var base = 0
            if fields.count > 5, let view = fields[5].items, view.count == 3, let offset = view[1].int { base = offset }
            let available = data.count / element.size
            guard tensor.shape.allSatisfy({ $0 >= 0 }), tensor.strides.allSatisfy({ $0 >= 0 }), tensor.offset >= 0, base >= 0 else {
                throw Problem("has a negative size, stride or offset")
            }
            guard tensor.strides.count == tensor.shape.count else {
                throw Problem("has \(tensor.shape.count) sizes but \(tensor.strides.count) strides")
            }
            guard tensor.shape.count <= Tensor.maxRank else {
                throw Problem("has rank \(tensor.shape.count), above the engine's limit of \(Tensor.maxRank)")
            }
            guard let count = Shape.checkedCount(tensor.shape), count <= Int(ProcessInfo.processInfo.physicalMemory) / 4 else {
                throw Problem("has shape \(tensor.shape), more elements than this machine's memory holds")
            }
            // The last element read, with every product and sum checked (strides and offsets come from the file).
            var last = base.addingReportingOverflow(tensor.offset)
            for (size, stride) in zip(tensor.shape, tensor.strides) where count > 0 && !last.overflow {
                let step = (size - 1).multipliedReportingOverflow(by: stride)
                last = step.overflow ? step : last.partialValue.addingReportingOverflow(step.partialValue)
            }
            guard count == 0 || (!last.overflow && last.partialValue < available) else {
                throw Problem("reads past the end of a storage of \(available) elements: corrupt or truncated")
            }
            if count == 0 { return Tensor.zeros(tensor.shape) }
            let out = Tensor(uninitializedShape: tensor.shape)
            let dst = out.pointer
            let contiguous = tensor.strides == Shape.contiguousStrides(tensor.shape) || count <= 1
            data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
                guard let src = raw.baseAddress else { return }
                let start = base + tensor.offset
                if contiguous {
                    if element == .float {
                        memcpy(dst, src + start * 4, count * 4)
                    } else {
                        for i in 0..<count { dst[i] = element.value(src, start + i) }
                    }
                    return
                }
                // A strided view (a transposed or sliced tensor): walk its index in row-major order. Every position
                // read lies in the storage (checked above), but stepping past the last one may overflow: the walk
                // wraps instead of trapping, and nothing is read after it.
                var index = [Int](repeating: 0, count: tensor.shape.count)
                var source = start
                for i in 0..<count {
                    dst[i] = element.value(src, source)
                    var axis = tensor.shape.count - 1
                    while axis >= 0 {
                        index[axis] += 1
                        source &+= tensor.strides[axis]
                        if index[axis] < tensor.shape[axis] { break }
                        source &-= tensor.strides[axis] &* tensor.shape[axis]
                        index[axis] = 0
                        axis -= 1
                    }
                }
            }
            return out
        }
    }
}
