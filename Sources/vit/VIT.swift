import ArgumentParser
import Foundation

@main
struct VIT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vit",
        abstract: "Vision Transformers in Swift: run, train and look inside ViTs on the CPU.",
        discussion: """
            Exit status: 0 all done; 1 ran, but some inputs failed (each named on stderr); 2 nothing could be done \
            (bad data, model or options: one line says which file and why); 130 interrupted.
            """,
        subcommands: [
            Predict.self, Detect.self, DetectionData.self, ZeroShot.self, Tokenize.self, Train.self, Pretrain.self, TrainCLIP.self,
            Eval.self, Embed.self,
            Inspect.self,
            Convert.self, ExportModel.self, Shard.self,
            Create.self, Bench.self, Generate.self, Serve.self
        ]
    )

    /// Runs the command, mapping failures to the exit statuses above: a wrong command line gets the parser's
    /// message and usage; anything that fails while running gets one line and no usage.
    static func main() {
        refuseUnknownCommand()
        do {
            var command = try parseAsRoot()
            try command.run()
            MPIJob.end(failed: false)
        } catch let exit as ExitCode {
            MPIJob.end(failed: exit.rawValue == 2)
            Foundation.exit(exit.rawValue)
        } catch {
            // The parser reports a wrong command line (and --help) by throwing too: its exit code tells them apart
            // from a failure while running (for which it has nothing better than EXIT_FAILURE).
            let code = exitCode(for: error)
            guard code == .success || code == .validationFailure else {
                printError("error: \(error)")
                MPIJob.end(failed: true)
                Foundation.exit(2)
            }
            let message = fullMessage(for: error)
            if code == .success {
                print(message)
                Foundation.exit(0)
            }
            // One style for every message: "error: ..." (the parser's own say "Error: ...").
            printError(message.hasPrefix("Error: ") ? "error: " + message.dropFirst(7) : message)
            Foundation.exit(2)
        }
    }

    /// A first argument that names no command (`vit predct`, `vit export --help`) is refused with the nearest
    /// command's name, instead of the parser's "unexpected arguments" or the top-level help.
    static func refuseUnknownCommand(_ arguments: [String] = CommandLine.arguments) {
        guard arguments.count > 1, let first = arguments.dropFirst().first, !first.hasPrefix("-"), first != "help" else { return }
        let names = configuration.subcommands.map { $0._commandName }
        guard !names.contains(first) else { return }
        let nearest = names.min { editDistance(first, $0) < editDistance(first, $1) }
        let hint = nearest.flatMap { editDistance(first, $0) <= max(2, first.count / 3) ? " (did you mean '\($0)'?)" : nil }
        printError("error: '\(first)' is not a vit command\(hint ?? ""); the commands: \(names.joined(separator: ", ")) (vit --help)")
        Foundation.exit(2)
    }

    /// Levenshtein distance between two short words.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let b = Array(b)
        var row = Array(0...b.count)  // distances from a's prefix so far to each prefix of b
        for (i, x) in a.enumerated() {
            var diagonal = row[0]
            row[0] = i + 1
            for (j, y) in b.enumerated() {
                let above = row[j + 1]
                row[j + 1] = min(above + 1, row[j] + 1, diagonal + (x == y ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }
}

/// A command that cannot do what it was asked, with why (exit status 2, no usage text).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
