import Foundation

/// The JSON header of a safetensors file, parsed straight into entries: a general JSON parser builds a tree of boxed
/// values first (JSONSerialization took 5.6 GB and 72 s for an 87 MB header of 1.45 million empty tensors), this one
/// keeps only the names, shapes and offsets, in memory proportional to the header.
///
/// The grammar is the format's: one object whose members are `"__metadata__": {string: string}` or
/// `name: {"dtype": string, "shape": [int, ...], "data_offsets": [int, int]}`; other members of an entry are skipped.
struct SafetensorsHeader {
    struct RawEntry {
        var dtype: String
        var shape: [Int]
        var offsets: [Int]
    }

    var entries: [(name: String, entry: RawEntry)] = []
    var metadata: [String: String] = [:]

    struct Malformed: Error, CustomStringConvertible {
        let position: Int
        let why: String
        var description: String { "header is not valid safetensors JSON at byte \(position): \(why)" }
    }

    init(_ bytes: UnsafeBufferPointer<UInt8>) throws {
        var parser = Parser(bytes: bytes)
        try parser.expect(UInt8(ascii: "{"))
        if try parser.next(isOneOf: UInt8(ascii: "}")) { try parser.end(); return }
        repeat {
            let name = try parser.string()
            try parser.expect(UInt8(ascii: ":"))
            if name == "__metadata__" {
                metadata = try parser.stringMap()
            } else {
                entries.append((name, try parser.entry(name)))
            }
        } while try parser.separator(closing: UInt8(ascii: "}"))
        try parser.end()
    }

    private struct Parser {
        static let delimiters = Set(",]} \t\r\n".utf8)
        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0

        func fail(_ why: String) -> Malformed { Malformed(position: i, why: why) }

        mutating func skipSpace() {
            while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        }

        mutating func expect(_ byte: UInt8) throws {
            skipSpace()
            guard i < bytes.count, bytes[i] == byte else { throw fail("expected '\(Character(Unicode.Scalar(byte)))'") }
            i += 1
        }

        /// Consumes `byte` if it comes next.
        mutating func next(isOneOf byte: UInt8) throws -> Bool {
            skipSpace()
            guard i < bytes.count else { throw fail("ends early") }
            if bytes[i] == byte { i += 1; return true }
            return false
        }

        /// After a member or element: true at ',' (another follows), false at `closing`.
        mutating func separator(closing: UInt8) throws -> Bool {
            if try next(isOneOf: UInt8(ascii: ",")) { return true }
            try expect(closing)
            return false
        }

        /// Only whitespace (or the spaces safetensors pads with) may follow the object.
        mutating func end() throws {
            skipSpace()
            while i < bytes.count, bytes[i] == 0 { i += 1 }
            guard i == bytes.count else { throw fail("text after the header object") }
        }

        mutating func string() throws -> String {
            try expect(UInt8(ascii: "\""))
            // The common case, a name without escapes: validated and made a String at once.
            var end = i
            while end < bytes.count, bytes[end] != UInt8(ascii: "\""), bytes[end] != UInt8(ascii: "\\"), bytes[end] >= 0x20 { end += 1 }
            if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
                guard let text = String(validating: UnsafeBufferPointer(rebasing: bytes[i..<end]), as: UTF8.self) else {
                    throw fail("a string is not UTF-8")
                }
                i = end + 1
                return text
            }
            var scalars = String.UnicodeScalarView()
            var start = i
            func flush(_ end: Int) throws {
                guard let text = String(validating: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self) else {
                    throw fail("a string is not UTF-8")
                }
                scalars.append(contentsOf: text.unicodeScalars)
            }
            while true {
                guard i < bytes.count else { throw fail("a string never ends") }
                let byte = bytes[i]
                if byte == UInt8(ascii: "\"") {
                    try flush(i)
                    i += 1
                    return String(scalars)
                }
                guard byte >= 0x20 else { throw fail("a control character inside a string") }
                if byte != UInt8(ascii: "\\") { i += 1; continue }
                try flush(i)
                i += 1
                guard i < bytes.count else { throw fail("a string never ends") }
                let escape = bytes[i]
                i += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(Unicode.Scalar(escape))
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var value = try hex4()
                    if (0xD800..<0xDC00).contains(value) {  // a surrogate pair
                        guard bytes.count - i >= 6, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw fail("an unpaired surrogate")
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("an unpaired surrogate") }
                        value = 0x10000 + (value - 0xD800) << 10 + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(value) else { throw fail("an invalid \\u escape") }
                    scalars.append(scalar)
                default: throw fail("an invalid escape")
                }
                start = i
            }
        }

        mutating func hex4() throws -> UInt32 {
            guard bytes.count - i >= 4 else { throw fail("a \\u escape ends early") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                guard let digit = UInt32(String(Unicode.Scalar(bytes[i])), radix: 16) else { throw fail("a \\u escape is not hex") }
                value = value << 4 | digit
                i += 1
            }
            return value
        }

        /// A non-negative integer (shapes and offsets are nothing else); its magnitude is checked, not trapped on.
        mutating func integer() throws -> Int {
            skipSpace()
            var value = 0, digits = 0
            if i < bytes.count, bytes[i] == UInt8(ascii: "-") { throw fail("a negative shape or offset") }
            while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) {
                let (times, o1) = value.multipliedReportingOverflow(by: 10)
                let (plus, o2) = times.addingReportingOverflow(Int(bytes[i] - UInt8(ascii: "0")))
                guard !o1 && !o2 else { throw fail("an integer that overflows") }
                value = plus
                digits += 1
                i += 1
            }
            guard digits > 0 else { throw fail("expected an integer") }
            if i < bytes.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[i]) {
                throw fail("a shape or offset that is not an integer")
            }
            return value
        }

        mutating func integers() throws -> [Int] {
            try expect(UInt8(ascii: "["))
            var values: [Int] = []
            if try next(isOneOf: UInt8(ascii: "]")) { return values }
            repeat { values.append(try integer()) } while try separator(closing: UInt8(ascii: "]"))
            return values
        }

        mutating func stringMap() throws -> [String: String] {
            try expect(UInt8(ascii: "{"))
            var map: [String: String] = [:]
            if try next(isOneOf: UInt8(ascii: "}")) { return map }
            repeat {
                let key = try string()
                try expect(UInt8(ascii: ":"))
                map[key] = try string()
            } while try separator(closing: UInt8(ascii: "}"))
            return map
        }

        mutating func entry(_ name: String) throws -> RawEntry {
            try expect(UInt8(ascii: "{"))
            var dtype: String?, shape: [Int]?, offsets: [Int]?
            if !(try next(isOneOf: UInt8(ascii: "}"))) {
                repeat {
                    let key = try string()
                    try expect(UInt8(ascii: ":"))
                    switch key {
                    case "dtype": dtype = try string()
                    case "shape": shape = try integers()
                    case "data_offsets": offsets = try integers()
                    default: try skipValue(depth: 0)
                    }
                } while try separator(closing: UInt8(ascii: "}"))
            }
            guard let dtype, let shape, let offsets else { throw fail("tensor \(name) lacks dtype, shape or data_offsets") }
            return RawEntry(dtype: dtype, shape: shape, offsets: offsets)
        }

        /// Any JSON value, not kept (nesting bounded, so that a deep one cannot exhaust the stack).
        mutating func skipValue(depth: Int) throws {
            guard depth < 64 else { throw fail("values nested too deeply") }
            skipSpace()
            guard i < bytes.count else { throw fail("ends early") }
            switch bytes[i] {
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "{"):
                i += 1
                if try next(isOneOf: UInt8(ascii: "}")) { return }
                repeat {
                    _ = try string()
                    try expect(UInt8(ascii: ":"))
                    try skipValue(depth: depth + 1)
                } while try separator(closing: UInt8(ascii: "}"))
            case UInt8(ascii: "["):
                i += 1
                if try next(isOneOf: UInt8(ascii: "]")) { return }
                repeat { try skipValue(depth: depth + 1) } while try separator(closing: UInt8(ascii: "]"))
            default:
                // A number, true, false or null: its characters up to the next delimiter.
                let start = i
                while i < bytes.count, !Self.delimiters.contains(bytes[i]) { i += 1 }
                guard i > start else { throw fail("expected a value") }
            }
        }
    }
}
