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

    /// Symbol -> id, each merge's rank (lower merges first), and the merges by rank.
    let encoder: [String: Int]
    let ranks: [Pair: Int]
    let merges: [Pair]
    /// The largest id of the vocabulary.
    let largestId: Int
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
        if let (symbol, id) = vocab.first(where: { $0.value < 0 }) {
            throw TokenizerError(vocabURL, "gives \(symbol) the negative id \(id)")
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
        largestId = encoder.values.max() ?? 0
        ranks = Dictionary(merges.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        self.merges = merges
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

    /// One word's ids: its bytes as symbols, the last ending in `</w>`, merged pair by pair, lowest rank first, each
    /// pair at every place it occurs, left to right, as OpenAI's loop does. OpenAI's loop rescans the word after each
    /// merge (quadratic: a 300,000-letter word took minutes); here the symbols are a linked list, each ranked pair
    /// lists where it occurs, and a heap gives the next rank to merge, so a word costs O(n log n). The quadratic loop
    /// is kept as the reference in the tests (`CLIPTokenizerTests`).
    func bpe(_ word: String) -> [Int] {
        let cacheable = word.utf8.count <= 64  // common words; a hostile text's long ones would only fill memory
        if cacheable, let cached = lock.withLock({ cache[word] }) { return cached }
        var symbols = word.utf8.map { String(byteSymbols[Int($0)]) }
        guard !symbols.isEmpty else { return [] }
        symbols[symbols.count - 1] += "</w>"
        let n = symbols.count
        var next = Array(1...n), previous = Array(-1..<(n - 1))  // n: no next; -1: no previous
        var alive = [Bool](repeating: true, count: n)
        var places: [Int: [Int]] = [:]  // rank -> the left symbol of each place its pair may occur (some stale)
        var heap = MinHeap()
        func note(_ i: Int) {
            guard i >= 0, next[i] < n, let rank = ranks[Pair(first: symbols[i], second: symbols[next[i]])] else { return }
            if places[rank] == nil { heap.push(rank) }
            places[rank, default: []].append(i)
        }
        for i in 0..<(n - 1) { note(i) }
        while let rank = heap.pop() {
            guard let found = places.removeValue(forKey: rank) else { continue }
            let pair = merges[rank]
            for i in found.sorted() {
                let j = next[i]
                guard alive[i], j < n, symbols[i] == pair.first, symbols[j] == pair.second else { continue }
                symbols[i] = pair.first + pair.second
                alive[j] = false
                next[i] = next[j]
                if next[j] < n { previous[next[j]] = i }
                note(previous[i])
                note(i)
            }
        }
        var ids: [Int] = []
        var i = 0
        while i < n {
            ids.append(encoder[symbols[i]] ?? 0)
            i = next[i]
        }
        if cacheable { lock.withLock { cache[word] = ids } }
        return ids
    }

    /// The merge ranks still to do, smallest first.
    struct MinHeap {
        private var items: [Int] = []
        mutating func push(_ value: Int) {
            items.append(value)
            var child = items.count - 1
            while child > 0, items[(child - 1) / 2] > items[child] {
                items.swapAt(child, (child - 1) / 2)
                child = (child - 1) / 2
            }
        }
        mutating func pop() -> Int? {
            guard let top = items.first else { return nil }
            items[0] = items[items.count - 1]
            items.removeLast()
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < items.count, items[left] < items[smallest] { smallest = left }
                if right < items.count, items[right] < items[smallest] { smallest = right }
                if smallest == parent { return top }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
    }

    /// Throws unless every id this tokenizer gives (its vocabulary's and the start and end tokens) indexes an
    /// embedding of `vocabularySize` rows: a `vocab.json` beside a smaller model would index past it.
    public func check(fitting vocabularySize: Int, source: URL) throws {
        let largest = max(largestId, Self.endOfText)
        guard largest < vocabularySize else {
            throw TokenizerError(source, "gives ids up to \(largest), past the model's vocabulary of \(vocabularySize) (vocab_size)")
        }
    }
}

public struct TokenizerError: Error, CustomStringConvertible {
    public let description: String
    init(_ url: URL, _ why: String) { description = "\(url.path): \(why)" }
}
