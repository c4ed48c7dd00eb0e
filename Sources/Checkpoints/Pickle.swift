import Foundation

/// A value read from a Python pickle by `Unpickler`: plain data only. Lists, dicts and objects are references
/// because pickles fill them in place after making them (and may refer to them again from the memo).
public indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too wide for Int (little-endian two's complement bytes), e.g. PyTorch's legacy magic number.
    case wideInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// An allowed callable, named `module.name`, not yet called.
    case global(String)
    /// An instance of an allowed inert class (`argparse.Namespace`): its class name and the state BUILD gave it.
    case object(PickleObject)
    /// What a persistent id names: PyTorch's storages.
    case persistent(PickleValue)
    /// What the rebuild function of a tensor was given.
    case tensor(PickleTensor)

    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var int: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
    public var dict: PickleDict? { if case .dict(let d) = self { return d } else { return nil } }
    public var tensor: PickleTensor? { if case .tensor(let t) = self { return t } else { return nil } }
    /// The items of a tuple or list.
    public var items: [PickleValue]? {
        switch self {
        case .tuple(let items): return items
        case .list(let list): return list.items
        default: return nil
        }
    }
}

public final class PickleList { public var items: [PickleValue] = [] }

public final class PickleDict {
    public var entries: [(key: PickleValue, value: PickleValue)] = []
    public subscript(key: String) -> PickleValue? { entries.first { $0.key.string == key }?.value }
    /// The string keys, in order.
    public var keys: [String] { entries.compactMap { $0.key.string } }
}

public final class PickleObject {
    public let className: String
    public var state: PickleValue = .none
    init(className: String) { self.className = className }
}

/// A tensor as `torch._utils._rebuild_tensor_v2` receives it: a view (offset, sizes, strides, in elements) into
/// a storage named by a persistent id.
public struct PickleTensor {
    public let storage: PickleValue
    public let offset: Int
    public let shape: [Int]
    public let strides: [Int]
}

/// Reads a pickle (protocols 0-5) without running anything. Python's unpickler calls whatever GLOBAL names; this one
/// knows a fixed set of callables that checkpoints need (the tensor rebuild functions, `OrderedDict`, storage types,
/// and a few classes whose instances it keeps as inert data, such as the `argparse.Namespace` training scripts save)
/// and refuses every other name with an error that says which, before anything could be called.
public struct Unpickler {
    public struct Refused: Error, CustomStringConvertible {
        public let description: String
    }

    /// Callables a checkpoint needs, and classes kept as inert data.
    static let rebuildFunctions: Set<String> = [
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state", "collections.OrderedDict", "torch.Size",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype", "_codecs.encode",
        "builtins.set", "builtins.frozenset", "builtins.slice"
    ]
    static let inertClasses: Set<String> = ["argparse.Namespace"]
    static let storageTypes: Set<String> = [
        "FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage", "LongStorage", "IntStorage", "ShortStorage",
        "CharStorage", "ByteStorage", "BoolStorage"
    ]
    static func isAllowed(_ name: String) -> Bool {
        if rebuildFunctions.contains(name) || inertClasses.contains(name) { return true }
        if name.hasPrefix("torch."), storageTypes.contains(String(name.dropFirst(6))) { return true }
        // torch.float32 and the like (dtypes named in newer rebuild calls): inert names.
        return name.hasPrefix("torch.")
            && ["float", "half", "bfloat16", "double", "int", "long", "bool", "uint8", "int8", "short"]
                .contains { String(name.dropFirst(6)).hasPrefix($0) }
    }

    let bytes: [UInt8]
    public private(set) var position: Int

    static let maxContainers = 1_000_000
    /// EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, TUPLE, TUPLE1-3, LIST, DICT, EMPTY_SET, FROZENSET, REDUCE, NEWOBJ(_EX), BUILD,
    /// and BINPERSID and PERSID, whose value wraps what they pop (a chain of them nests as deeply as a list's).
    static let buildsContainer: Set<UInt8> = [
        0x29, 0x5D, 0x7D, 0x74, 0x85, 0x86, 0x87, 0x6C, 0x64, 0x8F, 0x91, 0x52, 0x81, 0x92, 0x62, 0x51, 0x50
    ]

    public init(_ bytes: [UInt8], at position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    enum Failure: Error, CustomStringConvertible {
        case malformed(String)
        var description: String {
            switch self {
            case .malformed(let why): return why
            }
        }
    }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - position else {
            throw Failure.malformed("ends early at byte \(position) (wanted \(n) more): truncated")
        }
        defer { position += n }
        return bytes[position..<(position + n)]
    }

    private mutating func byte() throws -> UInt8 { try take(1).first! }

    private mutating func littleEndian(_ n: Int) throws -> Int {
        try take(n).reversed().reduce(0) { $0 << 8 | Int($1) }
    }

    private mutating func line() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw Failure.malformed("unterminated text at byte \(position)") }
        defer { position = end + 1 }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }

    /// Reads one pickle, up to and including its STOP; `persistentLoad` resolves persistent ids.
    public mutating func load(persistentLoad: (PickleValue) throws -> PickleValue = { .persistent($0) }) throws -> PickleValue {
        var stack: [PickleValue] = []
        var marks: [Int] = []
        var memo: [Int: PickleValue] = [:]
        // Every container can nest in the next, and Swift releases nested values recursively: the count bounds the
        // depth (with `PyTorchCheckpoint`'s large stack) as well as the memory. A state dict with its optimiser
        // state has some thousands.
        var containers = 0
        func container() throws {
            containers += 1
            guard containers <= Self.maxContainers else {
                throw Failure.malformed("more than \(Self.maxContainers) lists, tuples, dicts and objects: not a checkpoint")
            }
        }
        func pop() throws -> PickleValue {
            guard let v = stack.popLast() else { throw Failure.malformed("stack underflow at byte \(position)") }
            return v
        }
        func popMark() throws -> [PickleValue] {
            guard let mark = marks.popLast(), mark <= stack.count else { throw Failure.malformed("no MARK at byte \(position)") }
            defer { stack.removeSubrange(mark...) }
            return Array(stack[mark...])
        }
        func top() throws -> PickleValue {
            guard let v = stack.last else { throw Failure.malformed("stack underflow at byte \(position)") }
            return v
        }
        func global(_ module: String, _ name: String) throws -> PickleValue {
            let full = "\(module).\(name)"
            guard Self.isAllowed(full) else {
                throw Refused(
                    description:
                        "refused: the pickle asks for \(full), which is not one of the functions a checkpoint needs (tensor rebuilding, OrderedDict, storages); nothing was run"
                )
            }
            return .global(full)
        }
        func setItems(_ target: PickleValue, _ items: [PickleValue]) throws {
            guard case .dict(let dict) = target, items.count % 2 == 0 else { throw Failure.malformed("SETITEMS on a non-dict") }
            for i in stride(from: 0, to: items.count, by: 2) { dict.entries.append((items[i], items[i + 1])) }
        }
        func append(_ target: PickleValue, _ items: [PickleValue]) throws {
            guard case .list(let list) = target else { throw Failure.malformed("APPENDS on a non-list") }
            list.items += items
        }

        while true {
            let opcode = try byte()
            if Self.buildsContainer.contains(opcode) { try container() }
            switch opcode {
            case 0x80: _ = try byte()  // PROTO
            case 0x95: _ = try take(8)  // FRAME: a length hint only
            case 0x2E: return try pop()  // STOP
            case 0x28: marks.append(stack.count)  // MARK
            case 0x29: stack.append(.tuple([]))  // EMPTY_TUPLE
            case 0x5D: stack.append(.list(PickleList()))  // EMPTY_LIST
            case 0x7D: stack.append(.dict(PickleDict()))  // EMPTY_DICT
            case 0x74: stack.append(.tuple(try popMark()))  // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))  // TUPLE1
            case 0x86:  // TUPLE2
                let b = try pop(), a = try pop()
                stack.append(.tuple([a, b]))
            case 0x87:  // TUPLE3
                let c = try pop(), b = try pop(), a = try pop()
                stack.append(.tuple([a, b, c]))
            case 0x6C:  // LIST
                let list = PickleList()
                list.items = try popMark()
                stack.append(.list(list))
            case 0x64:  // DICT
                let dict = PickleDict()
                try setItems(.dict(dict), try popMark())
                stack.append(.dict(dict))
            case 0x61:  // APPEND
                let value = try pop()
                try append(try top(), [value])
            case 0x65:  // APPENDS
                let items = try popMark()
                try append(try top(), items)
            case 0x73:  // SETITEM
                let value = try pop(), key = try pop()
                try setItems(try top(), [key, value])
            case 0x75:  // SETITEMS
                let items = try popMark()
                try setItems(try top(), items)
            case 0x90:  // ADDITEMS (to a set): kept as a list
                let items = try popMark()
                if case .list(let list) = try top() { list.items += items }
            case 0x8F: stack.append(.list(PickleList()))  // EMPTY_SET
            case 0x91: stack.append(.tuple(try popMark()))  // FROZENSET
            case 0x4E: stack.append(.none)  // NONE
            case 0x88: stack.append(.bool(true))  // NEWTRUE
            case 0x89: stack.append(.bool(false))  // NEWFALSE
            case 0x4B: stack.append(.int(try littleEndian(1)))  // BININT1
            case 0x4D: stack.append(.int(try littleEndian(2)))  // BININT2
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try littleEndian(4)))))  // BININT
            case 0x8A, 0x8B:  // LONG1, LONG4
                let n = opcode == 0x8A ? Int(try byte()) : try littleEndian(4)
                let raw = Array(try take(n))
                if raw.count <= 8 {
                    var value = 0
                    for (i, b) in raw.enumerated() { value |= Int(b) << (8 * i) }
                    if raw.count < 8, let last = raw.last, last & 0x80 != 0 { value -= 1 << (8 * raw.count) }  // sign
                    stack.append(.int(value))
                } else {
                    stack.append(.wideInt(raw))
                }
            case 0x49:  // INT (text): also True/False as 01/00
                let text = try line()
                if text == "01" || text == "00" {
                    stack.append(.bool(text == "01"))
                } else {
                    guard let value = Int(text) else { throw Failure.malformed("bad INT \(text)") }
                    stack.append(.int(value))
                }
            case 0x4C:  // LONG (text)
                let text = try line()
                guard let value = Int(text.hasSuffix("L") ? String(text.dropLast()) : text) else {
                    throw Failure.malformed("bad LONG \(text)")
                }
                stack.append(.int(value))
            case 0x47:  // BINFLOAT, big-endian
                let raw = try take(8)
                stack.append(.float(Double(bitPattern: raw.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
            case 0x46:  // FLOAT (text)
                guard let value = Double(try line()) else { throw Failure.malformed("bad FLOAT") }
                stack.append(.float(value))
            case 0x58, 0x8C, 0x8D:  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                let n = try littleEndian(opcode == 0x58 ? 4 : opcode == 0x8C ? 1 : 8)
                stack.append(.string(String(decoding: try take(n), as: UTF8.self)))
            case 0x54, 0x55:  // BINSTRING, SHORT_BINSTRING (Python 2 str)
                let n = try littleEndian(opcode == 0x54 ? 4 : 1)
                stack.append(.string(String(decoding: try take(n), as: UTF8.self)))
            case 0x42, 0x43, 0x8E:  // BINBYTES, SHORT_BINBYTES, BINBYTES8
                let n = try littleEndian(opcode == 0x42 ? 4 : opcode == 0x43 ? 1 : 8)
                stack.append(.bytes(Array(try take(n))))
            case 0x96:  // BYTEARRAY8
                stack.append(.bytes(Array(try take(try littleEndian(8)))))
            case 0x56:  // UNICODE (text, raw-unicode-escaped)
                stack.append(.string(try line()))
            case 0x53:  // STRING (text, quoted)
                stack.append(.string(String(try line().dropFirst().dropLast())))
            case 0x71: memo[try littleEndian(1)] = try top()  // BINPUT
            case 0x72: memo[try littleEndian(4)] = try top()  // LONG_BINPUT
            case 0x70:  // PUT
                guard let index = Int(try line()) else { throw Failure.malformed("bad PUT") }
                memo[index] = try top()
            case 0x94: memo[memo.count] = try top()  // MEMOIZE
            case 0x68, 0x6A, 0x67:  // BINGET, LONG_BINGET, GET
                let index = opcode == 0x67 ? Int(try line()) ?? -1 : try littleEndian(opcode == 0x68 ? 1 : 4)
                guard let value = memo[index] else { throw Failure.malformed("memo \(index) used before it was set") }
                stack.append(value)
            case 0x30: _ = try pop()  // POP
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32: stack.append(try top())  // DUP
            case 0x63:  // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                stack.append(try global(module, name))
            case 0x93:  // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard let m = module.string, let n = name.string else { throw Failure.malformed("STACK_GLOBAL of non-strings") }
                stack.append(try global(m, n))
            case 0x51: stack.append(try persistentLoad(try pop()))  // BINPERSID
            case 0x50: stack.append(try persistentLoad(.string(try line())))  // PERSID
            case 0x52:  // REDUCE: callable(*args)
                let args = try pop(), callable = try pop()
                stack.append(try call(callable, args.items ?? []))
            case 0x81:  // NEWOBJ: cls.__new__(cls, *args)
                let args = try pop(), cls = try pop()
                stack.append(try call(cls, args.items ?? []))
            case 0x92:  // NEWOBJ_EX
                _ = try pop()
                let args = try pop(), cls = try pop()
                stack.append(try call(cls, args.items ?? []))
            case 0x62:  // BUILD: obj.__setstate__(state) or obj.__dict__.update(state)
                let state = try pop()
                switch try top() {
                case .object(let object): object.state = state
                case .dict, .list, .tensor, .tuple: break  // OrderedDict's and a parameter's extra state: ignored
                default: throw Failure.malformed("BUILD on an unexpected value at byte \(position)")
                }
            default:
                throw Failure.malformed(String(format: "unknown pickle opcode 0x%02x at byte %d", opcode, position - 1))
            }
        }
    }

    /// Calls an allowed callable on plain data: rebuild a tensor, make a dict, or keep an inert object.
    private func call(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        guard case .global(let name) = callable else { throw Failure.malformed("call of a non-callable at byte \(position)") }
        switch name {
        case "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2":
            guard args.count >= 4, let offset = args[1].int, let shape = args[2].items?.compactMap(\.int),
                let strides = args[3].items?.compactMap(\.int), shape.count == args[2].items?.count,
                strides.count == shape.count
            else { throw Failure.malformed("\(name) with unexpected arguments") }
            return .tensor(PickleTensor(storage: args[0], offset: offset, shape: shape, strides: strides))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let data = args.first else { throw Failure.malformed("\(name) without data") }
            return data
        case "collections.OrderedDict": return .dict(PickleDict())
        case "torch.Size", "builtins.set", "builtins.frozenset":
            let list = PickleList()
            list.items = args.first?.items ?? []
            return .list(list)
        case "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar":
            // A NumPy scalar: its dtype and raw bytes. Kept as a number where the dtype is a plain one.
            guard args.count == 2, case .object(let dtype) = args[0], dtype.className.hasPrefix("numpy.dtype:"),
                case .bytes(let raw) = args[1]
            else { return .none }
            return Self.numpyScalar(String(dtype.className.dropFirst("numpy.dtype:".count)), raw)
        case "numpy.dtype": return .object(PickleObject(className: "numpy.dtype:\(args.first?.string ?? "?")"))
        case "_codecs.encode":
            // Protocol 2's spelling of bytes: a str of code points below 256, encoded as latin-1.
            guard let text = args.first?.string else { return .none }
            return .bytes(text.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        default:
            // Storage types, dtypes, inert classes: a name or a record, nothing run.
            return .object(PickleObject(className: name))
        }
    }

    static func numpyScalar(_ kind: String, _ raw: [UInt8]) -> PickleValue {
        let value = raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        switch (kind, raw.count) {
        case ("f8", 8): return .float(Double(bitPattern: value))
        case ("f4", 4): return .float(Double(Float(bitPattern: UInt32(value))))
        case (_, 8) where kind.hasPrefix("i"): return .int(Int(Int64(bitPattern: value)))
        case (_, 4) where kind.hasPrefix("i"): return .int(Int(Int32(truncatingIfNeeded: value)))
        default: return .none
        }
    }
}
