import ArgumentParser
import Foundation
import Tensors
import Training
import ViT

/// The options of every training command (`train`, `pretrain`, `train-clip`), defined once: the run's folder,
/// resuming, and the part of the recipe all methods share. The help shows `R`'s defaults; an option not given keeps
/// the method's default (and on --resume, the run's own).
struct RunOptions<R: Recipe>: ParsableArguments {
    @Option(name: .shortAndLong, help: "Output folder (the run).") var output: String
    @Flag(
        help:
            "Continue the run saved in --output: the same recipe, data and random state (--epochs may raise the epoch count, --precision change the compute precision)."
    )
    var resume = false
    @Option(help: "Epochs (default: \(R().epochs)).") var epochs: Int?
    @Option(help: "Images per step (default: \(R().batchSize)); under mpirun, per rank: the global batch is N times larger.")
    var batchSize: Int?
    @Option(help: "Peak learning rate, reached at the end of the warm-up (default: \(R.learningRateDefault)).") var lr: Float?
    @Option(help: "Learning rate at the end of the cosine decay (default: \(R().minLearningRate)).") var minLR: Float?
    @Option(help: "Warm-up epochs, linear from 0 (default: \(R.warmupDefault)).") var warmup: Float?
    @Option(help: "Decoupled weight decay of the weights (not of biases and norms; default: \(R().weightDecay)).") var weightDecay: Float?
    @Option(help: "Seed of everything the run draws: initialisation, data order, augmentation, masks, dropout (default: 0).")
    var seed: UInt64?
    @Option(help: "Stop (with a checkpoint to resume from) after this many steps.") var maxSteps: Int?
    @Flag(help: "Write each step's loss terms, learning rate and image indices to steps.jsonl in --output (a line per step).")
    var logSteps = false
    @Option(
        help:
            "Compute precision: bf16 runs the matrix products in bfloat16 (mixed precision: float32 weights, gradients and optimiser state, as torch.autocast), fp32 everything in float32 (default: fp32; with --resume, the run's own)."
    )
    var precision: Precision?

    /// The loop's own limit; the recipe's numbers are checked by the library (`Recipe.validate`), which names the
    /// fields that `flags` turns into these options.
    func validate() throws {
        if let maxSteps, maxSteps < 1 { throw ValidationError("--max-steps must be at least 1, got \(maxSteps)") }
        try Precision.refuseInt8(precision, in: "training")
    }

    /// The option of each recipe field every training command shares.
    static var flags: [String: String] {
        [
            "epochs": "--epochs", "batchSize": "--batch-size", "learningRate": "--lr", "minLearningRate": "--min-lr",
            "warmupEpochs": "--warmup", "weightDecay": "--weight-decay"
        ]
    }

    /// The seed in force.
    var seedValue: UInt64 { seed ?? R().seed }

    /// `recipe` (the method's defaults and its own options) with the shared options given, checked as a whole by the
    /// library before any data is read; a problem names the options (the command's own in `flags`).
    func recipe(_ recipe: R, flags: [String: String] = [:]) throws -> R { try apply(to: recipe, flags: flags) }

    /// `recipe` of any method with the shared options given (what `recipe` does for the command's own method; a
    /// command that trains another task, as `train --task detection`, applies them to that task's recipe).
    func apply<S: Recipe>(to recipe: S, flags: [String: String] = [:]) throws -> S {
        var recipe = recipe
        if let epochs { recipe.epochs = epochs }
        // Under mpirun the option is per rank, as a DDP script's; the recipe holds the global batch (what the batch
        // rules, as MAE's blr x batch / 256, and a resumed run see).
        recipe.batchSize = (batchSize ?? recipe.batchSize) * (try MPIJob.ranks())
        if let lr { recipe.peakLearningRate = lr }
        if let minLR { recipe.minLearningRate = minLR }
        if let warmup { recipe.warmupEpochs = warmup }
        if let weightDecay { recipe.weightDecay = weightDecay }
        recipe.seed = seed ?? S().seed
        recipe.precision = Precision.decide(asked: precision, default: .fp32).precision
        do { try recipe.validate() } catch TrainingError.badFields(let problem) {
            throw CommandFailure(problem.described(naming: Self.flags.merging(flags) { shared, _ in shared }))
        }
        return recipe
    }

    /// Starts the run in --output (`start` builds it, new or resumed, once Ctrl-C is caught) and shows it to its end:
    /// the progress bar, --max-steps, a stop request, and the files it wrote (`files`).
    func train<Record>(files: String, start: (URL) throws -> Training<Record>) throws {
        let interrupt = Interrupt()
        let job = try MPIJob.current()
        let training = try start(URL(fileURLWithPath: output))
        if let job { try training.distribute(over: job) }
        if logSteps && training.writesFiles { training.stepLog = URL(fileURLWithPath: output).appendingPathComponent("steps.jsonl") }
        try TrainingProgress.run(training, maxSteps: maxSteps, interrupt: interrupt, output: output, files: files)
    }

    /// Refuses to start a new run over one that --resume would continue.
    func checkNewRun() throws {
        if FileManager.default.fileExists(atPath: URL(fileURLWithPath: output).appendingPathComponent("checkpoint.safetensors").path) {
            throw CommandFailure("\(output) already holds a run: add --resume to continue it, or choose another --output")
        }
    }
}
