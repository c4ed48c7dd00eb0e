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
            Predict.self, ZeroShot.self, Tokenize.self, Train.self, Pretrain.self, TrainCLIP.self, Eval.self, Embed.self, Inspect.self,
            Convert.self,
            Create.self, Bench.self
        ]
    )

    /// Runs the command, mapping failures to the exit statuses above: a wrong command line gets the parser's
    /// message and usage; anything that fails while running gets one line and no usage.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch {
            // The parser reports a wrong command line (and --help) by throwing too: its exit code tells them apart
            // from a failure while running (for which it has nothing better than EXIT_FAILURE).
            let code = exitCode(for: error)
            guard code == .success || code == .validationFailure else {
                printError("error: \(error)")
                Foundation.exit(2)
            }
            let message = fullMessage(for: error)
            if code == .success {
                print(message)
                Foundation.exit(0)
            }
            printError(message)
            Foundation.exit(2)
        }
    }
}

/// A command that cannot do what it was asked, with why (exit status 2, no usage text).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
