import Checkpoints
import Foundation
import Tensors

/// `checkpoint.safetensors`, the one file every training run (`vit train`, `pretrain`, `train-clip`) continues from:
/// its tensors in groups named by prefix (`model.*`, `optimizer.*`, and `ema.*` or `teacher.*`), and the run's state
/// (recipe, position in the data, random state, history) as JSON in one metadata entry, and a CRC-32 of all of it
/// (`Safetensors.checksumKey`) that `read` verifies. Written to a temporary name and renamed, so an interrupted save
/// leaves the previous checkpoint whole.
enum RunCheckpoint {
    /// JSON has no NaN or infinity, but a validation loss can overflow while every weight is finite: such numbers are
    /// written as strings rather than making the run unsavable.
    static let nonFiniteNumbers = (
        encoding: JSONEncoder.NonConformingFloatEncodingStrategy.convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan"),
        decoding: JSONDecoder.NonConformingFloatDecodingStrategy.convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    )

    /// Writes `groups` (prefix -> tensors) and `state`, encoded under the metadata entry `key`.
    static func write<State: Encodable>(_ groups: [String: [String: Tensor]], state: State, key: String, to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        var tensors: [String: Tensor] = [:]
        for (prefix, group) in groups {
            for (name, tensor) in group { tensors["\(prefix).\(name)"] = tensor }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = nonFiniteNumbers.encoding
        let text = String(decoding: try encoder.encode(state), as: UTF8.self)
        try Safetensors.write(tensors, metadata: ["format": "pt", "producer": "SwiftViT", key: text], checksum: true, to: url)
    }

    /// Reads `folder/checkpoint.safetensors`: the state under `key` and the tensors of each group in `groups` (a group
    /// the file lacks is empty). A missing file, or one without that state, is a `badCheckpoint` naming the file;
    /// `run` says what kind of run it is ("training", "pre-training") and `writer` which command writes it.
    static func read<State: Decodable>(
        in folder: URL, key: String, groups: [String], as: State.Type, run: String, writer: String
    ) throws -> (url: URL, state: State, groups: [String: [String: Tensor]]) {
        let url = folder.appendingPathComponent("checkpoint.safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TrainingError.badCheckpoint(url, "no such file: no \(run) checkpoint (nothing to resume) in \(folder.path)")
        }
        let file = try SafetensorsFile(contentsOf: url)
        // Every checkpoint since the checksum was added carries one; a file without it is an older run's.
        try file.verifyChecksum()
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = nonFiniteNumbers.decoding
        guard let text = file.metadata[key], let state = try? decoder.decode(State.self, from: Data(text.utf8)) else {
            throw TrainingError.badCheckpoint(url, "has no SwiftViT \(run) state: not written by \(writer)?")
        }
        var tensors = Dictionary(uniqueKeysWithValues: groups.map { ($0, [String: Tensor]()) })
        for name in file.names {
            guard let dot = name.firstIndex(of: "."), tensors[String(name[..<dot])] != nil else { continue }
            tensors[String(name[..<dot])]![String(name[name.index(after: dot)...])] = try file.tensor(name)
        }
        return (url, state, tensors)
    }
}
