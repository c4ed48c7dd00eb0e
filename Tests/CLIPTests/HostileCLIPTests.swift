import Checkpoints
import Foundation
import Tensors
import TestSupport
import Testing

@testable import CLIP

/// CLIP's files, second round (issue 46): configurations out of range or not numbers, a vocabulary past the
/// embedding, mismatched q/k/v projections and words of any length give one error naming the file, never a trap or
/// a quadratic stall.
@Suite struct HostileCLIPTests {
    /// OpenAI's BPE loop as written in `SimpleTokenizer.bpe` (rescanning the word after each merge): the reference
    /// the O(n log n) `bpe` must match.
    static func referenceBPE(_ tokenizer: CLIPTokenizer, _ word: String) -> [Int] {
        var symbols = word.utf8.map { String(tokenizer.byteSymbols[Int($0)]) }
        guard !symbols.isEmpty else { return [] }
        symbols[symbols.count - 1] += "</w>"
        while symbols.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(symbols.count - 1) {
                if let rank = tokenizer.ranks[.init(first: symbols[i], second: symbols[i + 1])], rank < (best?.rank ?? .max) {
                    best = (rank, i)
                }
            }
            guard let best else { break }
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
        return symbols.map { tokenizer.encoder[$0] ?? 0 }
    }

    @Test func bpeMatchesOpenAIsLoopOnEveryKindOfWord() throws {
        let tokenizer = try CLIPTokenizer.openAI()
        var generator = SplitMix(seed: 46)
        // Words from few letters (many overlapping merges, repeated pairs), real words, other scripts, long runs.
        let alphabets = [
            Array("aeinrst"), Array("ab"), Array("abcdefghijklmnopqrstuvwxyz"), Array("éüøßçñ"), Array("日本語中文"), Array("!?.,;")
        ]
        var words = ["photograph", "aaaaaaaaaaaaaaaaaaaaa", "abababababab", "mississippi", "antidisestablishmentarianism", "日本"]
        for _ in 0..<600 {
            let alphabet = alphabets[Int(generator.next() % UInt64(alphabets.count))]
            let length = 1 + Int(generator.next() % 40)
            words.append(String((0..<length).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }))
        }
        words.append(String((0..<2_000).map { _ in Array("etaoinshrdlu")[Int(generator.next() % 12)] }))
        for word in words { #expect(tokenizer.bpe(word) == Self.referenceBPE(tokenizer, word), "\(word.prefix(40))") }
    }

    /// A 300,000-letter word (over a minute with the quadratic loop) tokenizes to the context: start, 75 of its
    /// tokens, end.
    @Test func aVeryLongWordFillsTheContext() throws {
        let tokenizer = try CLIPTokenizer.openAI()
        let word = String(repeating: "abcdefghij", count: 30_000)
        let ids = tokenizer.tokenize(word)
        #expect(ids.count == 77 && ids.first == CLIPTokenizer.startOfText && ids.last == CLIPTokenizer.endOfText)
        #expect(Array(ids[1..<76]) == Array(tokenizer.bpe(word).prefix(75)))
        #expect(Array(tokenizer.bpe(String(repeating: "abcdefghij", count: 20)).prefix(10)) == Array(ids[1..<11]))
    }

    /// A copy of the open_clip fixture whose configuration is `edit`ed.
    func openCLIPFolder(_ name: String, _ edit: (inout [String: Any]) -> Void) throws -> URL {
        let folder = try temporaryFolder("swiftvit-hostile-clip-\(name)")
        let source = TokenizerTests.fixture("open_clip_config.json").deletingLastPathComponent()
        try FileManager.default.copyItem(
            at: source.appendingPathComponent("open_clip_model.safetensors"),
            to: folder.appendingPathComponent("open_clip_model.safetensors"))
        var json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("open_clip_config.json")))
            as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: folder.appendingPathComponent("open_clip_config.json"))
        return folder
    }

    @Test func openCLIPConfigurationsOutOfRangeNameTheirFile() throws {
        func setting(_ tower: String, _ key: String, _ value: Any) -> (inout [String: Any]) -> Void {
            { json in
                var model = json["model_cfg"] as! [String: Any]
                var cfg = model[tower] as! [String: Any]
                cfg[key] = value
                model[tower] = cfg
                json["model_cfg"] = model
            }
        }
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("zero-width", setting("vision_cfg", "width", 0), "vision_cfg.width"),
            ("negative-layers", setting("text_cfg", "layers", -3), "text_cfg.layers"),
            ("huge-width", setting("vision_cfg", "width", 1e30), "not an integer"),
            ("fraction", setting("vision_cfg", "patch_size", 3.5), "not an integer"),
            ("string", setting("text_cfg", "heads", "eight"), "not a number"),
            ("list", setting("vision_cfg", "layers", [3, 4, 6, 3]), "not a number"),
            ("zero-heads", setting("text_cfg", "heads", 0), "text_cfg.heads"),
            ("small-vocab", setting("text_cfg", "vocab_size", 100), "text_cfg.vocab_size"),
            ("zero-context", setting("text_cfg", "context_length", 0), "text_cfg.context_length"),
            ("huge-image", setting("vision_cfg", "image_size", 1 << 40), "vision_cfg.image_size"),
            ("head-width", setting("vision_cfg", "head_width", 0), "vision_cfg.head_width"),
            ("head-width-48", setting("vision_cfg", "head_width", 48), "vision_cfg.width 64 is not a multiple of vision_cfg.head_width 48"),
            ("patch-7", setting("vision_cfg", "patch_size", 7), "vision_cfg.patch_size 7 does not divide vision_cfg.image_size 32"),
            (
                "zero-embed",
                { json in
                    var m = json["model_cfg"] as! [String: Any]; m["embed_dim"] = 0; json["model_cfg"] = m
                }, "model_cfg.embed_dim"
            )
        ]
        for (name, edit, reason) in cases {
            let folder = try openCLIPFolder(name, edit)
            defer { try? FileManager.default.removeItem(at: folder) }
            #expect(throws: (any Error).self, "\(name)") { try CLIPModel.load(folder) }
            do { _ = try CLIPModel.load(folder) } catch {
                #expect("\(error)".contains("open_clip_config.json") && "\(error)".contains(reason), "\(name): \(error)")
            }
        }
    }

    /// Sizes each in range can multiply past any memory: refused before a model is built (which would fail to
    /// allocate), through the folder's file.
    @Test func aCLIPThatCannotFitIsRefusedBeforeItIsBuilt() throws {
        var config = CLIPConfig()
        (config.visionWidth, config.visionLayers, config.visionHeadWidth) = (65_536, 1_024, 64)
        #expect { try config.checkMemory() } throws: { "\($0)".contains("this CLIP needs about") && "\($0)".contains("GiB available") }
        #expect(throws: Never.self) { try CLIPConfig().checkMemory(batchSize: 8) }  // ViT-B/32's shape
        let folder = try openCLIPFolder("huge") { json in
            var model = json["model_cfg"] as! [String: Any]
            var text = model["text_cfg"] as! [String: Any]
            (text["width"], text["layers"], text["heads"]) = (65_536, 1_024, 64)
            model["text_cfg"] = text
            json["model_cfg"] = model
        }
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect { try CLIPModel.load(folder) } throws: { "\($0)".contains("open_clip_config.json") && "\($0)".contains("needs about") }
    }

    /// A copy of the Hugging Face fixture with `edit` applied to its config.json and `weights` to its tensors.
    func huggingFaceFolder(
        _ name: String, config edit: (inout [String: Any]) -> Void = { _ in }, weights: (inout [String: Tensor]) -> Void = { _ in }
    ) throws -> URL {
        let folder = try temporaryFolder("swiftvit-hostile-hf-clip-\(name)")
        let source = TokenizerTests.fixture("hf-clip")
        for file in ["preprocessor_config.json", "vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(file), to: folder.appendingPathComponent(file))
        }
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: folder.appendingPathComponent("config.json"))
        var tensors = try SafetensorsFile(contentsOf: source.appendingPathComponent("model.safetensors")).allTensors()
        weights(&tensors)
        try Safetensors.write(tensors, to: folder.appendingPathComponent("model.safetensors"))
        return folder
    }

    @Test func huggingFaceFoldersOutOfRangeNameTheirFile() throws {
        func text(_ key: String, _ value: Any) -> (inout [String: Any]) -> Void {
            { json in
                var t = json["text_config"] as? [String: Any] ?? [:]
                t[key] = value
                json["text_config"] = t
            }
        }
        for (name, edit, reason) in [
            ("zero-heads", text("num_attention_heads", 0), "heads"), ("huge", text("hidden_size", 1e300), "not an integer"),
            ("negative", text("num_hidden_layers", -1), "text_config.num_hidden_layers"),
            ("context", text("max_position_embeddings", 1), "text_config.max_position_embeddings")
        ] as [(String, (inout [String: Any]) -> Void, String)] {
            let folder = try huggingFaceFolder(name, config: edit)
            defer { try? FileManager.default.removeItem(at: folder) }
            do {
                _ = try CLIPModel.load(folder)
                Issue.record("\(name) loaded")
            } catch {
                #expect("\(error)".contains("config.json") && "\(error)".contains(reason), "\(name): \(error)")
            }
        }
        // q, k and v of one block with different shapes: refused before they are stacked.
        let folder = try huggingFaceFolder("qkv") { tensors in
            let name = "text_model.encoder.layers.0.self_attn.k_proj.weight"
            let k = tensors[name]!
            tensors[name] = Tensor.zeros([k.shape[0] + 1, k.shape[1]])
        }
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect { try CLIPModel.load(folder) } throws: { "\($0)".contains("model.safetensors") && "\($0)".contains("not one shape") }
    }

    /// A vocab.json whose ids pass the model's embedding, or are negative: refused when the tokenizer is paired with
    /// the model, naming vocab.json.
    @Test func vocabularyIdsMustFitTheEmbedding() throws {
        for (name, id) in [("past", 60_000), ("negative", -5)] {
            let folder = try huggingFaceFolder("vocab-\(name)")
            defer { try? FileManager.default.removeItem(at: folder) }
            let url = folder.appendingPathComponent("vocab.json")
            var vocab = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Int]
            vocab["cat</w>"] = id
            try JSONSerialization.data(withJSONObject: vocab).write(to: url)
            let model = try CLIPModel.load(folder)
            #expect { try CLIPTokenizer.forModel(in: folder, vocabularySize: model.config.vocabSize) } throws: {
                "\($0)".contains("vocab.json") && "\($0)".contains(name == "past" ? "past the model's vocabulary" : "negative")
            }
        }
    }
}

/// A small deterministic generator for test inputs.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
