import ArgumentParser
import CLIP
import Foundation
import Inference
import Serving
import Tensors
import ViT

/// `vit serve`: models over HTTP, with Triton's dynamic batching (`Sources/Serving`).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve classifiers and CLIP models over HTTP: the Open Inference Protocol v2 and plain endpoints, with dynamic batching.",
        discussion: """
            Each --model NAME=PATH is served under NAME (PATH: any model vit predict reads, builtin:cifar10-vit, or a \
            CLIP folder as vit zeroshot reads). Endpoints: GET /v2/health/live, /v2/health/ready, /v2, \
            /v2/models/NAME, /v2/models/NAME/ready; POST /v2/models/NAME/infer (an image as a BYTES input: base64 JPEG \
            or PNG; for CLIP also texts as a BYTES input named text); POST /v1/models/NAME/classify (the image as the \
            body; answers as vit predict --json --logits); POST /v1/models/NAME/embed (the image, or for CLIP \
            {"texts": [...]} as JSON); POST /v1/models/NAME/zeroshot?classes=a,b,c[&templates=imagenet|cifar10] for \
            CLIP (answers as vit zeroshot --json). Requests for one model queue, and a batch \
            runs as soon as it has --max-batch-size images or its oldest has waited --max-queue-delay microseconds. \
            SIGTERM or Ctrl-C stops accepting, answers what is queued, and exits 0.
            """)

    @Option(name: .customLong("model"), help: "NAME=PATH: a model to serve under NAME (repeat for several).") var models: [String]
    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port to listen on (0: any free port, said on stderr).") var port = 8080
    @Option(help: "The most images in one batch.") var maxBatchSize = 8
    @Option(help: "Microseconds the oldest queued request may wait for a fuller batch (0: none).") var maxQueueDelay = 0
    @Option(help: "Requests queued per model beyond which 503 is answered.") var maxQueue = 256
    @Option(help: "Seconds a request may wait in the queue before 504 is answered.") var timeout = 30.0
    @Option(help: "The largest request body in bytes (413 beyond).") var maxBodyBytes = 16 << 20
    @Option(help: "Seconds after SIGTERM or Ctrl-C to finish the requests in flight; then the server exits anyway.")
    var drainTimeout = 30.0
    @Option(
        help:
            "Compute precision (default: bf16 where the CPU has AVX512-BF16 or AMX, else fp32); int8 runs the linear layers as int8 products (dynamic quantisation, inference only)."
    ) var precision: Precision?
    @OptionGroup var imageLimit: ImageLimitOptions

    func validate() throws {
        if models.isEmpty { throw ValidationError("give at least one --model NAME=PATH") }
        for model in models where Self.nameAndPath(model) == nil { throw ValidationError("--model \(model): expected NAME=PATH") }
        if maxBatchSize < 1 { throw ValidationError("--max-batch-size must be at least 1") }
        if maxQueueDelay < 0 || maxQueue < 1 || !(timeout > 0) || maxBodyBytes < 1 || !(drainTimeout >= 0) {
            throw ValidationError(
                "--max-queue-delay and --drain-timeout must be 0 or more, --max-queue, --timeout and --max-body-bytes positive")
        }
        if !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535") }
    }

    /// NAME=PATH as [NAME, PATH], both non-empty; nil otherwise.
    static func nameAndPath(_ spec: String) -> [String]? {
        let parts = spec.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        return parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty ? parts : nil
    }

    func run() throws {
        imageLimit.apply()
        let chosen = Precision.decide(asked: precision)
        var settings = DynamicBatcher.Settings()
        (settings.maxBatchSize, settings.maxQueueDelay, settings.maxQueue, settings.timeout) = (
            maxBatchSize, Double(maxQueueDelay) / 1e6, maxQueue, timeout
        )
        var served: [ServedModel] = []
        for spec in models {
            guard let parts = Self.nameAndPath(spec) else { throw CommandFailure("--model \(spec): expected NAME=PATH") }
            let path = try BuiltInModel.resolve(parts[1])
            if CLIPModel.isCLIPFolder(path) {
                // CLIP keeps float32 weights; --precision bf16 runs its matrix products in bf16, as vit zeroshot's.
                let clip = try CLIPModel.load(path)
                chosen.precision.quantize(clip)
                let tokenizer = try CLIPTokenizer.forModel(in: path, vocabularySize: clip.config.vocabSize)
                let kind = ServedModel.Kind.clip(ServedCLIP(model: clip, tokenizer: tokenizer, precision: chosen.precision.dtype))
                served.append(ServedModel(name: parts[0], kind: kind, settings: settings))
                printError("\(parts[0]): \(parts[1]) (CLIP, \(clip.config.embedDim)-wide embeddings)")
                continue
            }
            var loader = CheckpointLoader()
            loader.weightDType = chosen.precision.dtype
            let classifier = Classifier(model: try loader.loadModel(path), precision: chosen.precision)
            chosen.precision.quantize(classifier.model)
            served.append(ServedModel(name: parts[0], kind: .classifier(classifier), settings: settings))
            printError("\(parts[0]): \(parts[1]) (\(classifier.labels.count) classes)")
        }
        printError("precision: \(chosen.precision) (\(chosen.why))")
        var server = InferenceServer(models: served)
        (server.host, server.port, server.maxBodyBytes) = (host, port, maxBodyBytes)
        // Hummingbird stops accepting on SIGTERM or SIGINT and waits for the requests in flight; past --drain-timeout
        // the process ends regardless.
        let drainTimeout = self.drainTimeout
        let signals = [Int32(SIGTERM), Int32(SIGINT)].map { (number: Int32) -> DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                DispatchQueue.global().asyncAfter(deadline: .now() + drainTimeout) {
                    printError("stopped: requests still in flight after --drain-timeout \(drainTimeout) s were dropped")
                    Foundation.exit(0)
                }
            }
            source.resume()
            return source
        }
        defer { signals.forEach { $0.cancel() } }
        let done = DispatchSemaphore(value: 0)
        let failure = FailureBox()
        let (host, count) = (self.host, served.count)
        Task {
            do {
                try await server.run { port in printError("serving \(count) model\(count == 1 ? "" : "s") on http://\(host):\(port)") }
            } catch { failure.error = error }
            done.signal()
        }
        done.wait()
        if let error = failure.error { throw CommandFailure("the server stopped: \(error)") }
        printError("stopped")
    }
}

private final class FailureBox: @unchecked Sendable {
    var error: Error?
}
