import Checkpoints
import Foundation
import TestSupport
import Testing
@testable import CLIP

/// CLIP's tokenizer against open_clip's `SimpleTokenizer` (`../shared/fixtures/clip-tokenizer/reference_ids.json`)
/// and `open_clip.tokenize` (the open_clip fixture's `text_tokens`), from OpenAI's merges file and from Hugging Face's
/// vocab.json + merges.txt.
@Suite struct TokenizerTests {
    static func fixture(_ name: String) -> URL {
        Fixtures.url("CLIPTests", name)
    }

    static let openAI = try! CLIPTokenizer.openAI()  // the merges file shipped with SwiftViT (the open_clip wheel's)
    static let huggingFace = try! CLIPTokenizer(vocabulary: fixture("vocab.json"), merges: fixture("merges.txt"))

    @Test func idsMatchOpenCLIP() throws {
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixture("reference_ids.json"))) as! [String: [Int]]
        #expect(reference.count == 19)
        for (text, ids) in reference {
            #expect(Self.openAI.encode(text) == ids, "\(text.debugDescription) (OpenAI's merges)")
            #expect(Self.huggingFace.encode(text) == ids, "\(text.debugDescription) (Hugging Face's files)")
        }
    }

    /// SOT, EOT, zero padding to 77, and a text too long cut with EOT kept last.
    @Test func contextMatchesOpenCLIPTokenize() throws {
        let texts = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixture("texts.json"))) as! [String]
        let tokens = try SafetensorsFile(contentsOf: Self.fixture("text_tokens.safetensors")).tensor("text_tokens").toArray().map {
            Int($0)
        }
        #expect(texts.count == 10 && tokens.count == 10 * 77)
        for (i, text) in texts.enumerated() {
            #expect(Self.openAI.tokenize(text) == Array(tokens[(i * 77)..<((i + 1) * 77)]), "\(text.debugDescription)")
        }
        let long = Self.openAI.tokenize(texts[9])
        #expect(long.count == 77 && long.first == CLIPTokenizer.startOfText && long.last == CLIPTokenizer.endOfText)
    }

    @Test func cleaningUnescapesTwiceAndCollapsesWhitespace() {
        #expect(CLIPTokenizer.clean("  A  &amp;amp; B\t\n&#233;t&eacute &#x41; ") == "a & b ét&eacute a")
    }
}
