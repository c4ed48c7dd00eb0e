import Checkpoints
import Foundation
import Tensors

/// A run's `metrics.jsonl`: one JSON line per finished epoch, each with a `"kind"` that says which command wrote it
/// ("train", "pretrain", "train-clip", "train-detection"), so a reader decodes it as that record and never guesses.
public enum MetricsFile {
    /// One line of some kind of run.
    public enum Line: Equatable, Sendable {
        case train(EpochRecord)
        case pretrain(PretrainingRecord)
        case contrastive(ContrastiveRecord)
        case detection(DetectionRecord)
        case generation(GenerationRecord)
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Writes `history` atomically, one record a line.
    static func write<Record: TrainingRecord>(_ history: [Record], to url: URL) throws {
        let lines = history.map { $0.json() }.joined(separator: "\n") + "\n"
        try AtomicFile.write(Data(lines.utf8), to: url)
    }

    /// Reads the lines of `url`. A line without a `"kind"` (written before records had one) is read as the record
    /// whose fields it has.
    public static func read(_ url: URL) throws -> [Line] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw Failure(description: "\(url.path): no such file (not a run folder?)")
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = RunCheckpoint.nonFiniteNumbers.decoding
        struct Kind: Decodable { var kind: String? }
        var lines: [Line] = []
        for (number, line) in text.split(whereSeparator: \.isNewline).enumerated() where !line.isEmpty {
            let data = Data(line.utf8)
            func bad(_ why: String) -> Failure { Failure(description: "\(url.path): line \(number + 1) \(why)") }
            guard let kind = try? decoder.decode(Kind.self, from: data) else { throw bad("is not JSON") }
            do {
                switch kind.kind {
                case EpochRecord.kind?: lines.append(.train(try decoder.decode(EpochRecord.self, from: data)))
                case PretrainingRecord.kind?: lines.append(.pretrain(try decoder.decode(PretrainingRecord.self, from: data)))
                case ContrastiveRecord.kind?: lines.append(.contrastive(try decoder.decode(ContrastiveRecord.self, from: data)))
                case DetectionRecord.kind?: lines.append(.detection(try decoder.decode(DetectionRecord.self, from: data)))
                case GenerationRecord.kind?: lines.append(.generation(try decoder.decode(GenerationRecord.self, from: data)))
                case let other?: throw bad("has kind \"\(other)\", which no command of this vit writes")
                case nil:
                    // A contrastive record would also read as a pre-training one (both have "loss"), so it is tried first.
                    if let r = try? decoder.decode(EpochRecord.self, from: data) {
                        lines.append(.train(r))
                    } else if let r = try? decoder.decode(ContrastiveRecord.self, from: data) {
                        lines.append(.contrastive(r))
                    } else if let r = try? decoder.decode(PretrainingRecord.self, from: data) {
                        lines.append(.pretrain(r))
                    } else {
                        throw bad("is not an epoch record of vit train, pretrain or train-clip")
                    }
                }
            } catch let failure as Failure {
                throw failure
            } catch {
                throw bad("is not a \(kind.kind ?? "") epoch record: \(error)")
            }
        }
        return lines
    }
}
