import Datasets
import Foundation

/// CLIP's tokenizer, as OpenAI's `SimpleTokenizer` (and open_clip's, and Hugging Face's `CLIPTokenizer`): text cleaned
/// (HTML entities unescaped twice, Unicode composed, whitespace collapsed, lower-cased), cut by CLIP's pattern into
/// words, each word's UTF-8 bytes mapped to printable characters and merged by byte-level BPE, the last symbol of a
/// word ending in `</w>`.
public final class CLIPTokenizer {
    public static let startOfText = 49406
    public static let endOfText = 49407
    /// The context length of every published CLIP.
    public static let contextLength = 77

    /// Symbol -> id, and each merge's rank (lower merges first).
    let encoder: [String: Int]
    let ranks: [Pair: Int]
    /// Byte -> its printable stand-in (GPT-2's `bytes_to_unicode`).
    let byteSymbols: [Character]
    private var cache: [String: [Int]] = [:]
    private let lock = NSLock()

    struct Pair: Hashable {
        let first: String, second: String
    }

    /// From OpenAI's merges file (`bpe_simple_vocab_16e6.txt.gz`): the first 48,894 merges after the header; the
    /// vocabulary is the 256 byte symbols, the same with `</w>`, one symbol per merge, then the two special tokens.
    public convenience init(mergesFile url: URL) throws {
        let raw = try Data(contentsOf: url)
        let data = url.pathExtension == "gz" ? try Gzip.decompress(raw, source: url, limit: 64 << 20) : raw
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        let count = 49152 - 256 - 2
        guard lines.count > count else { throw TokenizerError(url, "holds \(lines.count - 1) merges, CLIP's vocabulary needs \(count)") }
        let merges = try lines[1...count].map { line -> Pair in
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { throw TokenizerError(url, "merge '\(line)' is not two symbols") }
            return Pair(first: String(parts[0]), second: String(parts[1]))
        }
        // OpenAI's order: `bytes_to_unicode().values()`, the printable bytes first, then the others.
        let symbols = Self.bytesToUnicode()
        let bytes = (Self.printableBytes + (0..<256).filter { !Self.printableBytes.contains($0) }).map { String(symbols[$0]) }
        var vocabulary = bytes + bytes.map { $0 + "</w>" } + merges.map { $0.first + $0.second }
        vocabulary += ["<|startoftext|>", "<|endoftext|>"]
        self.init(encoder: Dictionary(vocabulary.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a }), merges: merges)
    }

    /// From a Hugging Face `CLIPTokenizer`'s `vocab.json` (symbol -> id) and `merges.txt` (after a `#version` line).
    public convenience init(vocabulary vocabURL: URL, merges mergesURL: URL) throws {
        guard let vocab = try JSONSerialization.jsonObject(with: Data(contentsOf: vocabURL)) as? [String: Int] else {
            throw TokenizerError(vocabURL, "is not a JSON object of symbol -> id")
        }
        let lines = String(decoding: try Data(contentsOf: mergesURL), as: UTF8.self).split(separator: "\n")
        let merges = try lines.filter { !$0.hasPrefix("#version") }.map { line -> Pair in
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { throw TokenizerError(mergesURL, "merge '\(line)' is not two symbols") }
            return Pair(first: String(parts[0]), second: String(parts[1]))
        }
        self.init(encoder: vocab, merges: merges)
    }

    init(encoder: [String: Int], merges: [Pair]) {
        self.encoder = encoder
        ranks = Dictionary(merges.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        byteSymbols = Self.bytesToUnicode()
    }

    /// GPT-2's reversible byte -> printable character map: printable Latin-1 bytes stand for themselves, the others
    /// for the characters from U+0100 on, in order.
    static let printableBytes = Array(33...126) + Array(161...172) + Array(174...255)

    static func bytesToUnicode() -> [Character] {
        let printable = printableBytes
        var map = [Character](repeating: " ", count: 256)
        var next = 0
        for byte in 0..<256 {
            if printable.contains(byte) {
                map[byte] = Character(Unicode.Scalar(UInt8(byte)))
            } else {
                map[byte] = Character(Unicode.Scalar(UInt32(256 + next))!)
                next += 1
            }
        }
        return map
    }

    /// CLIP's `basic_clean` and `whitespace_clean`: HTML entities unescaped twice, composed (NFC, what ftfy leaves
    /// ordinary text as), whitespace runs collapsed to one space, trimmed; then lower-cased as `encode` does.
    public static func clean(_ text: String) -> String {
        let unescaped = unescapeHTML(unescapeHTML(text)).precomposedStringWithCanonicalMapping
        let words = unescaped.split(whereSeparator: { $0.isWhitespace })
        return words.joined(separator: " ").lowercased()
    }

    /// Python's `html.unescape` for the entities text carries: named ones of HTML's basic set and numeric ones.
    static func unescapeHTML(_ text: String) -> String {
        guard text.contains("&") else { return text }
        let named: [String: String] = [
            "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{A0}", "copy": "©", "reg": "®",
            "hellip": "…", "mdash": "—", "ndash": "–", "lsquo": "‘", "rsquo": "’", "ldquo": "“", "rdquo": "”"
        ]
        var out = ""
        var rest = Substring(text)
        while let ampersand = rest.firstIndex(of: "&") {
            out += rest[..<ampersand]
            let after = rest[rest.index(after: ampersand)...]
            let name = after.prefix { $0.isLetter || $0.isNumber || $0 == "#" }
            var replacement: String?
            if name.hasPrefix("#x") || name.hasPrefix("#X") {
                replacement = UInt32(name.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init).map { String($0) }
            } else if name.hasPrefix("#") {
                replacement = UInt32(name.dropFirst()).flatMap(Unicode.Scalar.init).map { String($0) }
            } else {
                replacement = named[String(name)]
            }
            if let replacement, !name.isEmpty {
                out += replacement
                var end = after.index(after.startIndex, offsetBy: name.count)
                if end < after.endIndex, after[end] == ";" { end = after.index(after: end) }
                rest = after[end...]
            } else {
                out += "&"
                rest = after
            }
        }
        return out + rest
    }

    /// CLIP's word pattern (case-insensitive): the special tokens, English contractions, runs of letters, single
    /// digits, runs of anything else that is not a space.
    static let pattern = try! NSRegularExpression(
        pattern: #"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"#,
        options: [.caseInsensitive])

    /// The ids of `text` (no start or end token).
    public func encode(_ text: String) -> [Int] {
        let cleaned = Self.clean(text)
        let range = NSRange(cleaned.startIndex..., in: cleaned)
        var ids: [Int] = []
        for match in Self.pattern.matches(in: cleaned, range: range) {
            guard let wordRange = Range(match.range, in: cleaned) else { continue }
            ids += bpe(String(cleaned[wordRange]))
        }
        return ids
    }

    /// `[SOT] + ids + [EOT]`, cut to `contextLength` with EOT kept last, zero-padded (open_clip's `tokenize`).
    public func tokenize(_ text: String, contextLength: Int = CLIPTokenizer.contextLength) -> [Int] {
        var ids = [Self.startOfText] + encode(text) + [Self.endOfText]
        if ids.count > contextLength {
            ids = Array(ids[..<contextLength])
            ids[contextLength - 1] = Self.endOfText
        }
        return ids + [Int](repeating: 0, count: contextLength - ids.count)
    }

    /// One word's ids: its bytes as symbols, the last ending in `</w>`, merged pair by pair, lowest rank first.
    func bpe(_ word: String) -> [Int] {
        if let cached = lock.withLock({ cache[word] }) { return cached }
        var symbols = word.utf8.map { String(byteSymbols[Int($0)]) }
        guard !symbols.isEmpty else { return [] }
        symbols[symbols.count - 1] += "</w>"
        while symbols.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(symbols.count - 1) {
                if let rank = ranks[Pair(first: symbols[i], second: symbols[i + 1])], rank < (best?.rank ?? .max) { best = (rank, i) }
            }
            guard let best else { break }
            // Merge every occurrence of the best pair, left to right, as OpenAI's loop does.
            let (first, second) = (symbols[best.index], symbols[best.index + 1])
            var merged: [String] = []
            var i = 0
            while i < symbols.count {
                if i < symbols.count - 1 && symbols[i] == first && symbols[i + 1] == second {
                    merged.append(first + second)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        let ids = symbols.map { encoder[$0] ?? 0 }
        lock.withLock { cache[word] = ids }
        return ids
    }
}

public struct TokenizerError: Error, CustomStringConvertible {
    public let description: String
    init(_ url: URL, _ why: String) { description = "\(url.path): \(why)" }
}
