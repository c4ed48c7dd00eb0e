import ArgumentParser

@main
struct VIT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vit",
        abstract: "Vision Transformers in Swift: run, train and look inside ViTs on the CPU.",
        subcommands: [Predict.self, Train.self, Eval.self, Embed.self, Inspect.self, Convert.self, Create.self, Bench.self]
    )
}
