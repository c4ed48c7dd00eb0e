import CLIP
import Foundation
import Hummingbird
import Images
import Inference
import MultipartKit
import NIOCore
import Tensors

/// `vit serve`: the Open Inference Protocol v2 over REST (KServe's, Triton's and Seldon's `inference_rest.md`), and
/// a plain endpoint for curl, over Hummingbird 2.
///
///     GET  /v2/health/live, /v2/health/ready, /v2, /v2/models/{name}, /v2/models/{name}/ready
///     POST /v2/models/{name}/infer      {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [N], "data": [BASE64...]}],
///                                        "outputs": [{"name": "logits"}, {"name": "probabilities"}]}
///     POST /v1/models/{name}/classify   the encoded image as the body; answers as `vit predict --json --logits`
///
/// Errors answer `{"error": "..."}` with the status that says what went wrong: 400 a bad request or image, 404 an
/// unknown model or path, 413 a body over the limit, 503 a full queue (with Retry-After), 504 a request that waited
/// past the timeout.
public struct InferenceServer: Sendable {
    public let models: [String: ServedModel]
    public var host = "127.0.0.1"
    public var port = 8080
    /// The largest request body accepted (413 beyond).
    public var maxBodyBytes = 16 << 20
    /// Predictions in the plain endpoint's answer.
    public var top = 5

    let metrics = ServerMetrics()

    public init(models: [ServedModel]) {
        self.models = Dictionary(models.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for model in models {
            let (metrics, name) = (self.metrics, model.name)
            model.batcher.onBatch = { metrics.batch(model: name, size: $0) }
            model.batcher.onDepth = { metrics.queueDepth(model: name, $0) }
        }
    }

    /// Serves until SIGTERM or SIGINT (then finishes what is in flight); `listening` is told the port once bound.
    public func run(listening: @escaping @Sendable (Int) -> Void) async throws {
        let app = Application(
            router: router(),
            configuration: .init(address: .hostname(host, port: port), serverName: "swiftvit"),
            onServerRunning: { channel in listening(channel.localAddress?.port ?? 0) })
        try await app.runService()
        for model in models.values { model.batcher.stop() }
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        // First: a middleware applies to the routes added after it. The access log and metrics, then errors as JSON.
        router.middlewares.add(MetricsMiddleware(metrics: metrics, models: Set(models.keys)))
        router.middlewares.add(ErrorMiddleware())
        let metrics = self.metrics
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: metrics.text))
            )
        }
        let server = self
        router.get("/v2/health/live") { _, _ in Self.json(["live": true]) }
        router.get("/v2/health/ready") { _, _ in Self.json(["ready": true]) }
        router.get("/v2") { _, _ in Self.json(ServerMetadata()) }
        router.get("/v2/models/:name") { _, context in
            let model = try server.model(context)
            return Self.json(ModelMetadata(model))
        }
        router.get("/v2/models/:name/ready") { _, context in
            let model = try server.model(context)
            return Self.json(["name": .string(model.name), "ready": .bool(true)] as [String: JSONScalar])
        }
        router.post("/v2/models/:name/infer") { request, context in
            let model = try server.model(context)
            let body = try await server.body(request)
            let infer: InferRequest
            do { infer = try JSONDecoder().decode(InferRequest.self, from: Data(buffer: body)) } catch {
                throw ServingError(.badRequest, "the body is not an inference request: \(Self.reason(error))")
            }
            return Self.json(try await server.infer(infer, on: model))
        }
        router.post("/v1/models/:name/embed") { request, context in
            let model = try server.model(context)
            if let type = request.headers[.contentType], type.lowercased().hasPrefix("application/json") {
                return Self.json(try await server.embedTexts(try await server.body(request), on: model))
            }
            let image = try await server.upload(request).image
            let answer = try await server.answers(for: [try server.preprocessed(image, index: 0, on: model)], on: model)[0]
            return Self.json(["embedding": answer.embedding])
        }
        router.post("/v1/models/:name/classify") { request, context in
            let model = try server.model(context)
            guard let classifier = model.classifier else {
                throw ServingError(
                    .badRequest, "\(model.name) is a CLIP model: POST /v1/models/\(model.name)/zeroshot?classes=a,b,c classifies with it")
            }
            let image = try await server.upload(request).image
            let logits = try await server.answers(for: [try server.preprocessed(image, index: 0, on: model)], on: model)[0].logits
            let predictions = classifier.top(Tensor(logits, shape: [1, logits.count]), k: server.top)[0]
            return Self.json(
                PredictionRecord(
                    file: nil, top: predictions.map { .init(index: $0.index, label: $0.label, probability: $0.probability) }, logits: logits
                ))
        }
        router.post("/v1/models/:name/zeroshot") { request, context in
            let model = try server.model(context)
            let upload = try await server.upload(request)
            let classes = upload.fields["classes"] ?? request.uri.queryParameters.get("classes")
            let templates = upload.fields["templates"] ?? request.uri.queryParameters.get("templates") ?? "imagenet"
            return Self.json(try await server.zeroShot(upload.image, classes: classes, templates: templates, on: model))
        }
        return router
    }

    private func model(_ context: BasicRequestContext) throws -> ServedModel {
        let name = context.parameters.get("name") ?? ""
        guard let model = models[name] else {
            throw ServingError(.notFound, "no model named '\(name)' (served: \(models.keys.sorted().joined(separator: ", ")))")
        }
        return model
    }

    private func body(_ request: Request) async throws -> ByteBuffer {
        do { return try await request.body.collect(upTo: maxBodyBytes) } catch {
            throw ServingError(.contentTooLarge, "the body is over the limit of \(maxBodyBytes) bytes (--max-body-bytes)")
        }
    }

    /// The image of a plain endpoint's request: the body itself, or of multipart form data (`curl -F image=@cat.jpg`)
    /// the first part that carries a file (else the first part); and the form's other fields (`-F classes=cat,dog`).
    func upload(_ request: Request) async throws -> (image: Data, fields: [String: String]) {
        let body = try await body(request)
        guard body.readableBytes > 0 else { throw ServingError(.badRequest, "the body is empty: send the image's bytes") }
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("multipart/form-data") else {
            return (Data(buffer: body), [:])
        }
        guard
            let boundary = type.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) })
                .first(where: { $0.lowercased().hasPrefix("boundary=") })?.dropFirst(9).trimmingCharacters(
                    in: CharacterSet(charactersIn: "\""))
        else { throw ServingError(.badRequest, "multipart form data without a boundary") }
        struct Part {
            var isFile = false
            var name: String?
            var bytes: [UInt8] = []
        }
        var parts: [Part] = []
        var current = Part()
        let parser = MultipartParser(boundary: boundary)
        parser.onHeader = { header, value in
            guard header.lowercased() == "content-disposition" else { return }
            if value.contains("filename=") { current.isFile = true }
            if let range = value.range(of: #"(^|;)\s*name="[^"]*""#, options: .regularExpression) {
                current.name = value[range].split(separator: "\"", omittingEmptySubsequences: false).dropFirst().first.map(String.init)
            }
        }
        parser.onBody = { buffer in current.bytes += buffer.readBytes(length: buffer.readableBytes) ?? [] }
        parser.onPartComplete = {
            parts.append(current)
            current = Part()
        }
        do { try parser.execute(body) } catch { throw ServingError(.badRequest, "the multipart form data do not parse: \(error)") }
        guard let image = parts.first(where: \.isFile) ?? parts.first else {
            throw ServingError(.badRequest, "the multipart form data hold no part")
        }
        var fields: [String: String] = [:]
        for part in parts where !part.isFile {
            if let name = part.name, let text = String(validating: part.bytes, as: UTF8.self) { fields[name] = text }
        }
        return (Data(image.bytes), fields)
    }

    /// `/embed` with `{"texts": [...]}`: CLIP's text embeddings, as `vit embed --text`.
    func embedTexts(_ body: ByteBuffer, on model: ServedModel) async throws -> [String: [[Float]]] {
        guard let clip = model.clip else {
            throw ServingError(.badRequest, "\(model.name) is not a CLIP model: it embeds images (send the image's bytes)")
        }
        struct Texts: Decodable { let texts: [String] }
        let texts: [String]
        do { texts = try JSONDecoder().decode(Texts.self, from: Data(buffer: body)).texts } catch {
            throw ServingError(.badRequest, "the body is not {\"texts\": [...]}: \(Self.reason(error))")
        }
        let embeddings = try await self.textEmbeddings(texts, clip, model)
        return ["embeddings": embeddings]
    }

    /// Each text's embedding [E], on the model's weights while no batch runs.
    func textEmbeddings(_ texts: [String], _ clip: ServedCLIP, _ model: ServedModel) async throws -> [[Float]] {
        guard !texts.isEmpty, texts.count <= Self.maxTexts else {
            throw ServingError(.badRequest, "give 1 to \(Self.maxTexts) texts, got \(texts.count)")
        }
        let values = await model.batcher.exclusively { clip.textEmbeddings(texts).toArray() }
        let width = values.count / texts.count
        return (0..<texts.count).map { Array(values[($0 * width)..<(($0 + 1) * width)]) }
    }
    /// The most texts or classes one request may name: each costs a pass of the text tower.
    static let maxTexts = 1000

    /// `/zeroshot`: CLIP's zero-shot classification of one image, as `vit zeroshot --json` answers it.
    func zeroShot(_ image: Data, classes: String?, templates: String, on model: ServedModel) async throws -> ZeroShotRecord {
        guard let clip = model.clip else {
            throw ServingError(.badRequest, "\(model.name) is not a CLIP model: POST /v1/models/\(model.name)/classify classifies with it")
        }
        let names = (classes ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard names.count >= 2, names.count <= Self.maxTexts else {
            throw ServingError(
                .badRequest, "zero-shot classification needs 2 to \(Self.maxTexts) class names (classes=a,b,c), got \(names.count)")
        }
        // Named sets only: a request never names a file on the server.
        guard ["imagenet", "cifar10"].contains(templates), let prompts = try? PromptTemplates.named(templates) else {
            throw ServingError(.badRequest, "templates=\(templates): imagenet (80) or cifar10 (18)")
        }
        let tensor = try preprocessed(image, index: 0, on: model)
        let answer = try await answers(for: [tensor], on: model)[0]
        let classifier = await model.batcher.exclusively { UncheckedSendable(clip.zeroShot(classes: names, templates: prompts)) }.value
        let embedding = Tensor(answer.embedding, shape: [1, answer.embedding.count]).cast(to: answer.embeddingType)
        let probabilities = Autograd.withNoGrad { clip.zeroShotLogits(embedding, classifier).softmax() }.toArray()
        let ranked = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }.prefix(min(top, names.count))
        return ZeroShotRecord(top: ranked.map { .init(label: names[$0], index: $0, probability: Double(probabilities[$0])) })
    }

    /// An encoded image decoded (with --max-image-pixels' limit) and preprocessed, on the request's thread.
    func preprocessed(_ data: Data, index: Int, on model: ServedModel) throws -> Tensor {
        let image: RGBImage
        do { image = try RGBImage(data: data, source: URL(fileURLWithPath: "/image-\(index)")) } catch {
            throw ServingError(.badRequest, "image \(index): \((error as? FileError)?.reason ?? Self.reason(error))")
        }
        return model.transform(image)
    }

    /// Each preprocessed image's answer, from the batcher: a request's images queue together, so they can share a
    /// batch.
    func answers(for tensors: [Tensor], on model: ServedModel) async throws -> [DynamicBatcher.Answer] {
        do {
            return try await withThrowingTaskGroup(of: (Int, DynamicBatcher.Answer).self) { group in
                for (i, tensor) in tensors.enumerated() {
                    let image = UncheckedSendable(tensor)  // read only from here on
                    group.addTask { (i, try await model.batcher.submit(image.value)) }
                }
                var results = Array(repeating: DynamicBatcher.Answer(logits: [], embedding: []), count: tensors.count)
                for try await (i, answer) in group { results[i] = answer }
                return results
            }
        } catch DynamicBatcher.Refusal.queueFull {
            throw ServingError(.serviceUnavailable, "the queue of \(model.name) is full (--max-queue); retry shortly", retryAfter: 1)
        } catch DynamicBatcher.Refusal.timedOut {
            throw ServingError(.gatewayTimeout, "the request waited past --timeout in the queue of \(model.name)")
        }
    }

    func infer(_ request: InferRequest, on model: ServedModel) async throws -> InferResponse {
        guard request.inputs.count == 1, let input = request.inputs.first else {
            throw ServingError(.badRequest, "one input is expected (the images), got \(request.inputs.count)")
        }
        if let clip = model.clip, input.name == "text" {
            // CLIP's text tower: UTF-8 strings in a BYTES input named "text", their embeddings out.
            guard input.datatype == "BYTES", case .strings(let texts) = input.data, input.shape == [texts.count] else {
                throw ServingError(.badRequest, "input 'text' comes as BYTES of shape [N]: N texts")
            }
            if let asked = request.outputs?.map(\.name), asked != ["text_embedding"] {
                throw ServingError(.badRequest, "input 'text' gives output text_embedding only")
            }
            let rows = try await textEmbeddings(texts, clip, model)
            return InferResponse(
                modelName: model.name, modelVersion: "1", id: request.id,
                outputs: [.init(name: "text_embedding", datatype: "FP32", shape: [rows.count, rows[0].count], data: rows.flatMap { $0 })])
        }
        let size = model.transform.size
        let tensors: [Tensor]
        switch (input.datatype, input.data) {
        case ("BYTES", .strings(let texts)):
            guard input.shape.count == 1, input.shape[0] == texts.count else {
                throw ServingError(
                    .badRequest, "input '\(input.name)' has shape \(input.shape) for \(texts.count) elements: [N] for N images")
            }
            let images = try texts.enumerated().map { i, text -> Data in
                guard let data = Data(base64Encoded: text) else { throw ServingError(.badRequest, "image \(i) is not base64") }
                return data
            }
            tensors = try images.enumerated().map { try preprocessed($1, index: $0, on: model) }
        case ("UINT8", .numbers(let values)):
            // Pixels [N, H, W, 3], 0-255: preprocessed as an image of that size would be.
            guard input.shape.count == 4, input.shape[3] == 3, input.shape.allSatisfy({ $0 > 0 }), input.shape.reduce(1, *) == values.count
            else {
                throw ServingError(
                    .badRequest,
                    "input '\(input.name)' has shape \(input.shape) for \(values.count) values: UINT8 pixels come as [N, H, W, 3]")
            }
            guard values.allSatisfy({ $0 >= 0 && $0 <= 255 && $0 == $0.rounded() }) else {
                throw ServingError(.badRequest, "input '\(input.name)': UINT8 values must be whole numbers in 0...255")
            }
            let (n, h, w) = (input.shape[0], input.shape[1], input.shape[2])
            guard h * w <= DecodingLimit.maxPixels else {
                throw ServingError(
                    .badRequest, "input '\(input.name)': \(w)x\(h) is more than --max-image-pixels \(DecodingLimit.maxPixels)")
            }
            tensors = (0..<n).map { i in
                let pixels = values[(i * h * w * 3)..<((i + 1) * h * w * 3)].map { UInt8($0) }
                return model.transform(RGBImage(width: w, height: h, pixels: pixels))
            }
        case ("FP32", .numbers(let values)):
            // Already preprocessed: [N, 3, S, S] at the model's size, normalised.
            guard input.shape.count == 4, input.shape.dropFirst() == [3, size, size], input.shape[0] > 0,
                input.shape.reduce(1, *) == values.count
            else {
                throw ServingError(
                    .badRequest,
                    "input '\(input.name)' has shape \(input.shape) for \(values.count) values: FP32 images come preprocessed as [N, 3, \(size), \(size)]"
                )
            }
            guard values.allSatisfy(\.isFinite) else {
                throw ServingError(.badRequest, "input '\(input.name)' holds values that are not finite")
            }
            let plane = 3 * size * size
            tensors = (0..<input.shape[0]).map { i in
                Tensor(values[(i * plane)..<((i + 1) * plane)].map { Float($0) }, shape: [3, size, size])
            }
        case (let datatype, _) where !["BYTES", "UINT8", "FP32"].contains(datatype):
            throw ServingError(.badRequest, "input '\(input.name)' has datatype \(datatype): images come as BYTES, UINT8 or FP32")
        default:
            throw ServingError(.badRequest, "input '\(input.name)': its data do not match datatype \(input.datatype)")
        }
        let offered = ModelMetadata(model).outputs.map(\.name).filter { $0 != "text_embedding" }
        let requested = request.outputs?.map(\.name) ?? offered.filter { $0 != "embedding" || model.clip != nil }
        if let unknown = requested.first(where: { !offered.contains($0) }) {
            throw ServingError(.badRequest, "no output named '\(unknown)' for an image (outputs: \(offered.joined(separator: ", ")))")
        }
        let answers = try await answers(for: tensors, on: model)
        let logits = answers.map(\.logits)
        let classes = model.classifier?.labels.count ?? 0
        var outputs: [InferResponse.Output] = []
        for name in requested {
            switch name {
            case "logits": outputs.append(.init(name: name, datatype: "FP32", shape: [logits.count, classes], data: logits.flatMap { $0 }))
            case "probabilities":
                let values = Tensor(logits.flatMap { $0 }, shape: [logits.count, classes]).softmax().toArray()
                outputs.append(.init(name: name, datatype: "FP32", shape: [logits.count, classes], data: values))
            default:
                let width = answers.first?.embedding.count ?? 0
                outputs.append(.init(name: name, datatype: "FP32", shape: [answers.count, width], data: answers.flatMap(\.embedding)))
            }
        }
        return InferResponse(modelName: model.name, modelVersion: "1", id: request.id, outputs: outputs)
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: data)))
    }

    static func reason(_ error: Error) -> String {
        if let error = error as? DecodingError {
            switch error {
            case .keyNotFound(let key, _): return "no \"\(key.stringValue)\""
            case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
                let path = context.codingPath.map(\.stringValue).joined(separator: ".")
                return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
            @unknown default: return "\(error)"
            }
        }
        return "\(error)"
    }
}

/// A failure with the status it answers and its message.
struct ServingError: Error {
    let status: HTTPResponse.Status
    let message: String
    var retryAfter: Int?
    init(_ status: HTTPResponse.Status, _ message: String, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.retryAfter = retryAfter
    }
}

/// Each answered request's access-log line (swift-log, on stderr: method, path, status, milliseconds) and its count
/// and latency in the metrics, by model (one served, else ""), endpoint (the route's pattern) and status.
struct MetricsMiddleware: RouterMiddleware {
    let metrics: ServerMetrics
    let models: Set<String>

    func handle(_ request: Request, context: BasicRequestContext, next: (Request, BasicRequestContext) async throws -> Response)
        async throws
        -> Response
    {
        let started = ContinuousClock.now
        let response = try await next(request, context)
        let elapsed = started.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let endpoint = context.endpointPath ?? "unknown"
        let model = context.parameters.get("name").flatMap { models.contains($0) ? $0 : nil } ?? ""
        metrics.answered(
            model: model, endpoint: endpoint.replacingOccurrences(of: ":name", with: "{name}"), status: response.status.code,
            seconds: seconds)
        context.logger.info(
            "\(request.method) \(request.uri.path) \(response.status.code) \(String(format: "%.1f", seconds * 1000)) ms")
        return response
    }
}

/// Every failure as `{"error": ...}` with its status (Hummingbird's own, such as an unknown path, too).
struct ErrorMiddleware: RouterMiddleware {
    func handle(_ request: Request, context: BasicRequestContext, next: (Request, BasicRequestContext) async throws -> Response)
        async throws
        -> Response
    {
        do { return try await next(request, context) } catch let error as ServingError {
            var response = InferenceServer.json(["error": error.message], status: error.status)
            if let seconds = error.retryAfter { response.headers[.retryAfter] = "\(seconds)" }
            return response
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound ? "no such endpoint: \(request.uri.path)" : "\(error.status)")
            return InferenceServer.json(["error": message], status: error.status)
        } catch {
            return InferenceServer.json(["error": "\(error)"], status: .internalServerError)
        }
    }
}
