import Checkpoints
import Foundation
import Images
import Tensors
import TestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `vit serve` on the loopback address, as a client sees it: the Open Inference Protocol's endpoints, the plain
/// classify endpoint answering as `vit predict --json --logits` to the last bit, dynamic batching under concurrent
/// requests, each bad request's status and message, and a clean stop on SIGTERM.
@Suite(.serialized) struct ServeTests {
    struct Answer {
        let status: Int
        let body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// A running `vit serve` and its port.
    final class Server {
        let process = Process()
        let port: Int
        let errors = Pipe()

        init(_ arguments: [String]) throws {
            // env restores SIGTERM's default action for the test (the runner's children may inherit it ignored).
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["--default-signal=TERM,INT", CommandLineTests.executable.path, "serve", "--port", "0"] + arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = errors
            try process.run()
            var said = ""
            var port: Int?
            let end = Date().addingTimeInterval(60)
            while port == nil && Date() < end && process.isRunning {
                said += String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
                if let range = said.range(of: #"on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                    port = Int(said[range].split(separator: ":").last ?? "")
                }
            }
            guard let port else {
                process.terminate()
                throw CommandFailure("vit serve did not start: \(said)")
            }
            self.port = port
            // From here on stderr (the access log) is read as it comes: a full pipe would block the server's writes.
            let (handle, log) = (errors.fileHandleForReading, self.log)
            log.append(said)
            reader = Thread {
                while true {
                    let data = handle.availableData
                    if data.isEmpty { break }
                    log.append(String(decoding: data, as: UTF8.self))
                }
                log.finish()
            }
            reader?.start()
        }

        private var reader: Thread?
        private let log = Log()

        /// What the server said, gathered while it runs.
        final class Log: @unchecked Sendable {
            private let condition = NSCondition()
            private var text = ""
            private var ended = false
            func append(_ more: String) { condition.withLock { text += more } }
            func finish() {
                condition.withLock {
                    ended = true
                    condition.broadcast()
                }
            }
            /// Everything, once the server has closed its stderr.
            func all() -> String {
                condition.lock()
                defer { condition.unlock() }
                while !ended { condition.wait() }
                return text
            }
        }

        func request(_ path: String, method: String = "GET", body: Data? = nil, contentType: String? = nil) throws -> Answer {
            guard let url = URL(string: "http://127.0.0.1:\(port)\(path)") else { throw CommandFailure("bad path \(path)") }
            var request = URLRequest(url: url)
            request.httpMethod = method
            request.httpBody = body
            if let contentType { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
            let done = DispatchSemaphore(value: 0)
            let result = Box()
            URLSession.shared.dataTask(with: request) { data, response, error in
                result.answer = (response as? HTTPURLResponse).map { Answer(status: $0.statusCode, body: data ?? Data()) }
                result.error = error
                done.signal()
            }.resume()
            done.wait()
            if let answer = result.answer { return answer }
            throw CommandFailure("no answer to \(method) \(path): \(result.error.map { "\($0)" } ?? "")")
        }

        /// SIGTERM, then the exit status and what it said.
        func stop() -> (Int32, String) {
            kill(process.processIdentifier, SIGTERM)
            let said = log.all()
            process.waitUntilExit()
            return (process.terminationStatus, said)
        }

        deinit { if process.isRunning { process.terminate() } }
    }

    final class Box: @unchecked Sendable {
        var answer: Answer?
        var error: Error?
    }

    struct CommandFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    static let photo = Fixtures.repository.appendingPathComponent("docs/chelsea.png")

    func inferRequest(_ images: [Data], datatype: String = "BYTES", shape: [Int]? = nil, outputs: [String]? = nil) -> Data {
        var body: [String: Any] = [
            "inputs": [
                ["name": "image", "datatype": datatype, "shape": shape ?? [images.count], "data": images.map { $0.base64EncodedString() }]
            ]
        ]
        if let outputs { body["outputs"] = outputs.map { ["name": $0] } }
        return (try? JSONSerialization.data(withJSONObject: body)) ?? Data()
    }

    @Test func theProtocolAnswersAsPredictDoes() throws {
        let server = try Server(["--model", "cifar=builtin:cifar10-vit", "--max-batch-size", "4", "--max-queue-delay", "2000"])
        #expect(try server.request("/v2/health/live").json["live"] as? Bool == true)
        #expect(try server.request("/v2/health/ready").json["ready"] as? Bool == true)
        #expect(try server.request("/v2").json["name"] as? String == "swiftvit")
        let metadata = try server.request("/v2/models/cifar").json
        #expect(metadata["name"] as? String == "cifar")
        #expect((metadata["outputs"] as? [[String: Any]])?.first?["shape"] as? [Int] == [-1, 10])
        #expect(try server.request("/v2/models/cifar/ready").json["ready"] as? Bool == true)

        // The plain endpoint: the JSON of vit predict --json --logits (without "file"), to the last bit.
        let photo = try Data(contentsOf: Self.photo)
        let classified = try server.request("/v1/models/cifar/classify", method: "POST", body: photo)
        #expect(classified.status == 200, "\(classified.text)")
        let predict = Process()
        predict.executableURL = CommandLineTests.executable
        predict.arguments = ["predict", Self.photo.path, "--json", "--logits"]
        let out = Pipe()
        predict.standardOutput = out
        predict.standardError = FileHandle.nullDevice
        try predict.run()
        let line = out.fileHandleForReading.readDataToEndOfFile()
        predict.waitUntilExit()
        var expected = (try JSONSerialization.jsonObject(with: line)) as? [String: Any] ?? [:]
        expected["file"] = nil
        #expect(
            NSDictionary(dictionary: classified.json).isEqual(to: expected),
            "\(classified.text) against \(String(decoding: line, as: UTF8.self))")
        let logits = classified.json["logits"] as? [Double] ?? []
        #expect(logits.count == 10)

        // The protocol's infer: the same logits, and probabilities that sum to 1.
        let inferred = try server.request("/v2/models/cifar/infer", method: "POST", body: inferRequest([photo]))
        #expect(inferred.status == 200, "\(inferred.text)")
        let outputs = inferred.json["outputs"] as? [[String: Any]] ?? []
        #expect(outputs.map { $0["name"] as? String } == ["logits", "probabilities"])
        #expect(outputs.first?["data"] as? [Double] == logits)
        #expect(abs((outputs.last?["data"] as? [Double] ?? []).reduce(0, +) - 1) < 1e-5)

        // As multipart form data (curl -F image=@photo.png), beside another field: the same answer.
        var form = Data("--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n".utf8)
        form += Data(
            "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"chelsea.png\"\r\nContent-Type: image/png\r\n\r\n".utf8)
        form += photo + Data("\r\n--XyZ--\r\n".utf8)
        let uploaded = try server.request(
            "/v1/models/cifar/classify", method: "POST", body: form, contentType: "multipart/form-data; boundary=XyZ")
        #expect(uploaded.json["logits"] as? [Double] == logits, "\(uploaded.text)")
        for (type, says) in [("multipart/form-data", "without a boundary"), ("multipart/form-data; boundary=nothere", "hold no part")] {
            let bad = try server.request("/v1/models/cifar/classify", method: "POST", body: Data("garbage".utf8), contentType: type)
            #expect(bad.status == 400 && (bad.json["error"] as? String ?? "").contains(says), "\(bad.text)")
        }

        // Its embedding (the pooled features the head reads), from the plain endpoint and from infer alike.
        let embedded = try server.request("/v1/models/cifar/embed", method: "POST", body: photo).json["embedding"] as? [Double] ?? []
        let embeddingOutput = try server.request(
            "/v2/models/cifar/infer", method: "POST", body: inferRequest([photo], outputs: ["embedding"]))
        let output = (embeddingOutput.json["outputs"] as? [[String: Any]])?.first
        #expect(embedded.count == 192 && output?["data"] as? [Double] == embedded && output?["shape"] as? [Int] == [1, 192])

        // The same image as UINT8 pixels [1, H, W, 3]: the same bits as its PNG. And two at once.
        let decoded = try RGBImage(contentsOf: Self.photo)
        let pixels: [String: Any] = [
            "inputs": [
                [
                    "name": "image", "datatype": "UINT8", "shape": [2, decoded.height, decoded.width, 3],
                    "data": (decoded.pixels + decoded.pixels).map(Int.init)
                ]
            ],
            "outputs": [["name": "logits"]]
        ]
        let fromPixels = try server.request(
            "/v2/models/cifar/infer", method: "POST", body: try JSONSerialization.data(withJSONObject: pixels))
        let pixelLogits = ((fromPixels.json["outputs"] as? [[String: Any]])?.first?["data"] as? [Double]) ?? []
        #expect(
            pixelLogits.count == 20 && zip(pixelLogits.prefix(10), logits).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($1)) },
            "\(fromPixels.text)")
        // FP32: preprocessed images [N, 3, 32, 32], nested as the protocol allows.
        let plane = (0..<3).map { _ in (0..<32).map { _ in [Double](repeating: 0.5, count: 32) } }
        let tensor: [String: Any] = ["inputs": [["name": "image", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": [plane]]]]
        let fromTensor = try server.request(
            "/v2/models/cifar/infer", method: "POST", body: try JSONSerialization.data(withJSONObject: tensor))
        #expect(
            fromTensor.status == 200 && ((fromTensor.json["outputs"] as? [[String: Any]])?.first?["shape"] as? [Int]) == [1, 10],
            "\(fromTensor.text)")

        // Concurrent requests share batches and each gets its own image's answer.
        let concurrent = clients(8) { _ in try server.request("/v1/models/cifar/classify", method: "POST", body: photo) }
        for answer in concurrent {
            #expect(answer.status == 200)
            let values = answer.json["logits"] as? [Double] ?? []
            #expect(values.count == 10 && zip(values, logits).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($1)) }, "\(answer.text)")
        }

        // Prometheus' text: the requests by model, endpoint and status, the batches, the images.
        let metrics = try server.request("/metrics").text
        #expect(
            metrics.contains(#"swiftvit_requests_total{model="cifar",endpoint="/v1/models/{name}/classify",status="200"} 10"#), "\(metrics)"
        )
        #expect(metrics.contains(#"swiftvit_images_total{model="cifar"} 16"#), "\(metrics)")
        #expect(metrics.contains("swiftvit_batch_size_count") && metrics.contains("swiftvit_request_duration_seconds_bucket"))

        let (status, said) = server.stop()
        #expect(status == 0, "\(said)")
        #expect(said.contains("stopped"))
        #expect(said.contains("POST /v2/models/cifar/infer 200"), "the access log: \(said)")
    }

    /// `n` clients at once, a thread each (concurrentPerform would run only as many as there are cores).
    func clients(_ n: Int, _ request: @escaping @Sendable (Int) throws -> Answer) -> [Answer] {
        let answers = AnswersBox(Array(repeating: Answer(status: 0, body: Data()), count: n))
        let group = DispatchGroup()
        for i in 0..<n {
            group.enter()
            Thread.detachNewThread {
                answers.set(i, (try? request(i)) ?? Answer(status: -1, body: Data()))
                group.leave()
            }
        }
        group.wait()
        return answers.answers
    }

    final class AnswersBox: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var answers: [Answer]
        init(_ answers: [Answer]) { self.answers = answers }
        func set(_ i: Int, _ answer: Answer) { lock.withLock { answers[i] = answer } }
    }

    /// A CLIP model beside a classifier: image and text embeddings as open_clip's (the fixture's, within 1e-4), the
    /// protocol's text input, and zero-shot classes answering as `vit zeroshot --json`, to the last bit.
    @Test func clipEmbedsAndClassifiesByClassNames() throws {
        let fixtures = Fixtures.url("CLIPTests")
        let server = try Server(["--model", "clip=\(fixtures.path)", "--model", "cifar=builtin:cifar10-vit", "--precision", "fp32"])
        let reference = try SafetensorsFile(contentsOf: fixtures.appendingPathComponent("openclip-reference.safetensors"))
        func close(_ values: [Double], _ expected: [Float]) -> Bool {
            values.count == expected.count && zip(values, expected).allSatisfy { abs($0 - Double($1)) < 1e-4 }
        }
        let metadata = try server.request("/v2/models/clip").json
        #expect((metadata["inputs"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["image", "text"])

        // Texts: the plain endpoint and the protocol's BYTES input named "text" give open_clip's text embeddings.
        let texts = ["a photo of a cat.", "A photo of a DOG!", "a blurry photo of the automobile.", "it's   a  truck, isn't it?"]
        let embedded = try server.request(
            "/v1/models/clip/embed", method: "POST", body: try JSONSerialization.data(withJSONObject: ["texts": texts]),
            contentType: "application/json")
        let rows = embedded.json["embeddings"] as? [[Double]] ?? []
        #expect(close(rows.flatMap { $0 }, try reference.tensor("text_embeds").toArray()), "\(embedded.text)")
        let textInput: [String: Any] = ["inputs": [["name": "text", "datatype": "BYTES", "shape": [texts.count], "data": texts]]]
        let inferredTexts = try server.request(
            "/v2/models/clip/infer", method: "POST", body: try JSONSerialization.data(withJSONObject: textInput))
        let textOutput = (inferredTexts.json["outputs"] as? [[String: Any]])?.first
        #expect(textOutput?["name"] as? String == "text_embedding" && textOutput?["data"] as? [Double] == rows.flatMap { $0 })

        // Images: the plain endpoint and the protocol give open_clip's image embeddings.
        let images = try ["input0.png", "input1.png"].map { try Data(contentsOf: fixtures.appendingPathComponent($0)) }
        let imageRows = try images.map {
            try server.request("/v1/models/clip/embed", method: "POST", body: $0).json["embedding"] as? [Double] ?? []
        }
        #expect(close(imageRows.flatMap { $0 }, try reference.tensor("image_embeds").toArray()))
        let inferredImages = try server.request("/v2/models/clip/infer", method: "POST", body: inferRequest(images))
        let imageOutput = (inferredImages.json["outputs"] as? [[String: Any]]) ?? []
        #expect(imageOutput.count == 1 && imageOutput.first?["name"] as? String == "embedding", "\(inferredImages.text)")
        #expect(close(imageOutput.first?["data"] as? [Double] ?? [], try reference.tensor("image_embeds").toArray()))

        // Zero-shot: vit zeroshot --json's line without its file, to the last bit; the same classes as a form field.
        let photo = fixtures.appendingPathComponent("input0.png")
        let zeroshot = Process()
        zeroshot.executableURL = CommandLineTests.executable
        zeroshot.arguments = [
            "zeroshot", "--model", fixtures.path, "--classes", "cat,dog,truck", "--templates", "cifar10", "--precision", "fp32", "--json",
            photo.path
        ]
        let out = Pipe()
        (zeroshot.standardOutput, zeroshot.standardError) = (out, FileHandle.nullDevice)
        try zeroshot.run()
        let line = out.fileHandleForReading.readDataToEndOfFile()
        zeroshot.waitUntilExit()
        var expected = (try JSONSerialization.jsonObject(with: line)) as? [String: Any] ?? [:]
        expected["file"] = nil
        let classified = try server.request(
            "/v1/models/clip/zeroshot?classes=cat,dog,truck&templates=cifar10", method: "POST", body: images[0])
        #expect(NSDictionary(dictionary: classified.json).isEqual(to: expected), "\(classified.text) against \(expected)")
        var form = Data("--b\r\nContent-Disposition: form-data; name=\"classes\"\r\n\r\ncat,dog,truck\r\n".utf8)
        form += Data("--b\r\nContent-Disposition: form-data; name=\"templates\"\r\n\r\ncifar10\r\n".utf8)
        form += Data("--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n".utf8) + images[0]
        form += Data("\r\n--b--\r\n".utf8)
        let uploaded = try server.request(
            "/v1/models/clip/zeroshot", method: "POST", body: form, contentType: "multipart/form-data; boundary=b")
        #expect(NSDictionary(dictionary: uploaded.json).isEqual(to: expected), "\(uploaded.text)")

        // Each endpoint refuses the other kind of model, and a request never names a file on the server.
        let refusals: [(String, Data, String?, String)] = [
            ("/v1/models/clip/classify", images[0], nil, "zeroshot?classes="),
            ("/v1/models/cifar/zeroshot?classes=a,b", images[0], nil, "not a CLIP model"),
            ("/v1/models/clip/zeroshot?classes=cat", images[0], nil, "2 to 1000 class names"),
            ("/v1/models/clip/zeroshot?classes=a,b&templates=/etc/passwd", images[0], nil, "imagenet (80) or cifar10"),
            ("/v1/models/cifar/embed", Data(#"{"texts": ["a"]}"#.utf8), "application/json", "not a CLIP model"),
            ("/v1/models/clip/embed", Data(#"{"texts": []}"#.utf8), "application/json", "1 to 1000 texts"),
            ("/v1/models/clip/embed", Data(#"{"text": "a"}"#.utf8), "application/json", "not {\"texts\""),
            ("/v2/models/clip/infer", inferRequest(images, outputs: ["logits"]), nil, "no output named 'logits'")
        ]
        for (path, body, type, says) in refusals {
            let answer = try server.request(path, method: "POST", body: body, contentType: type)
            #expect(answer.status == 400 && (answer.json["error"] as? String ?? "").contains(says), "\(path): \(answer.text)")
        }
        let (status, _) = server.stop()
        #expect(status == 0)
    }

    @Test func badRequestsGetTheirStatusAndTheServerGoesOn() throws {
        let server = try Server(["--model", "cifar=builtin:cifar10-vit", "--max-body-bytes", "400000"])
        let photo = try Data(contentsOf: Self.photo)
        let cases: [(path: String, body: Data?, method: String, status: Int, says: String)] = [
            ("/v2/models/nope", nil, "GET", 404, "no model named 'nope'"),
            ("/v2/models/nope/infer", inferRequest([photo]), "POST", 404, "no model named 'nope'"),
            ("/v3/anything", nil, "GET", 404, "no such endpoint"),
            ("/v2/models/cifar/infer", Data("{bad".utf8), "POST", 400, "not an inference request"),
            ("/v2/models/cifar/infer", Data("{}".utf8), "POST", 400, "no \"inputs\""),
            ("/v2/models/cifar/infer", inferRequest([photo], datatype: "FP32"), "POST", 400, "do not match datatype FP32"),
            ("/v2/models/cifar/infer", inferRequest([photo], datatype: "INT64"), "POST", 400, "datatype INT64: images come as BYTES"),
            (
                "/v2/models/cifar/infer", Data(#"{"inputs":[{"name":"image","datatype":"UINT8","shape":[1,2,2,3],"data":[1,2,3]}]}"#.utf8),
                "POST",
                400, "shape [1, 2, 2, 3] for 3 values"
            ),
            (
                "/v2/models/cifar/infer",
                Data(#"{"inputs":[{"name":"image","datatype":"UINT8","shape":[1,1,1,3],"data":[1,2,300]}]}"#.utf8),
                "POST", 400, "whole numbers in 0...255"
            ),
            (
                "/v2/models/cifar/infer", Data(#"{"inputs":[{"name":"image","datatype":"FP32","shape":[1,3,8,8],"data":[1]}]}"#.utf8),
                "POST",
                400, "[N, 3, 32, 32]"
            ),
            ("/v2/models/cifar/infer", inferRequest([photo], shape: [2]), "POST", 400, "shape [2] for 1 elements"),
            ("/v2/models/cifar/infer", inferRequest([Data("not an image".utf8)]), "POST", 400, "image 0: is not a JPEG or PNG image"),
            ("/v2/models/cifar/infer", inferRequest([photo], outputs: ["features"]), "POST", 400, "no output named 'features'"),
            ("/v1/models/cifar/classify", Data(), "POST", 400, "the body is empty"),
            ("/v1/models/cifar/classify", Data(photo.prefix(2000)), "POST", 400, "image 0:"),
            ("/v1/models/cifar/classify", photo + Data(count: 200_000), "POST", 413, "over the limit of 400000 bytes")
        ]
        for round in 0..<5 {
            for c in cases {
                let answer = try server.request(c.path, method: c.method, body: c.body)
                #expect(answer.status == c.status, "round \(round), \(c.method) \(c.path): \(answer.status) \(answer.text)")
                #expect((answer.json["error"] as? String ?? "").contains(c.says), "\(c.path): \(answer.text)")
            }
            // And the next good request is served right.
            let good = try server.request("/v1/models/cifar/classify", method: "POST", body: photo)
            #expect(good.status == 200 && (good.json["top"] as? [[String: Any]])?.first?["label"] as? String == "cat", "\(good.text)")
        }
        // 1,000 malformed requests: a good infer request (of a small PNG) with a few random bytes changed, sent to
        // infer, classify or an unknown model. Each gets a status of its own (never 500), and the server goes on.
        let small = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvit-serve-\(UUID().uuidString).png")
        defer { try? FileManager.default.removeItem(at: small) }
        try PNG.write(RGBImage(width: 8, height: 8, pixels: (0..<192).map { UInt8($0) }), to: small)
        let valid = inferRequest([try Data(contentsOf: small)])
        var rng = SeededGenerator(seed: 5)
        var seen: [Int: Int] = [:]
        for i in 0..<1000 {
            var bytes = [UInt8](valid)
            for _ in 0..<(1 + Int(rng.next() % 4)) { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            let path = ["/v2/models/cifar/infer", "/v1/models/cifar/classify", "/v2/models/cifar/infer", "/v2/models/zzz/infer"][i % 4]
            let answer: Answer
            do { answer = try server.request(path, method: "POST", body: Data(bytes)) } catch {
                Issue.record("request \(i) to \(path) got no answer (\(error)): \(String(decoding: bytes, as: UTF8.self).prefix(200))")
                break
            }
            seen[answer.status, default: 0] += 1
            #expect([200, 400, 404].contains(answer.status), "\(path): \(answer.status) \(answer.text)")
            if answer.status != 200 { #expect(answer.json["error"] is String, "\(answer.text)") }
        }
        #expect(seen[400, default: 0] > 500, "\(seen)")
        let after = try server.request("/v1/models/cifar/classify", method: "POST", body: photo)
        #expect(after.status == 200 && (after.json["top"] as? [[String: Any]])?.first?["label"] as? String == "cat")

        let (status, said) = server.stop()
        #expect(status == 0, "\(said)")
    }

    /// A burst past the queue gets 503 with Retry-After for what does not fit, the queued requests are answered; clients
    /// that hang up mid-upload or mid-inference cost nothing; the next request is served right.
    @Test func burstsAndDisconnectsLeaveTheServerServing() throws {
        // A batch waits up to 1 s for 8 images; 2 may queue: of a burst of 20, 18 are refused at once.
        let server = try Server([
            "--model", "cifar=builtin:cifar10-vit", "--max-batch-size", "8", "--max-queue-delay", "1000000", "--max-queue", "2"
        ])
        let photo = try Data(contentsOf: Self.photo)
        let burst = clients(20) { _ in try server.request("/v1/models/cifar/classify", method: "POST", body: photo) }
        let statuses = burst.map(\.status)
        #expect(statuses.filter { $0 == 200 }.count >= 2 && statuses.allSatisfy { $0 == 200 || $0 == 503 }, "\(statuses)")
        #expect(statuses.contains(503), "\(statuses)")
        #expect(
            burst.first { $0.status == 503 }.map { ($0.json["error"] as? String ?? "").contains("queue of cifar is full") }
                ?? false)

        // Hanging up: mid-upload (a body promised and cut short), and right after sending a whole request.
        let request = "POST /v1/models/cifar/classify HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: "
        for script in [
            "exec 3<>/dev/tcp/127.0.0.1/\(server.port); printf '\(request)100000\\r\\n\\r\\nabc' >&3; exec 3>&-",
            "exec 3<>/dev/tcp/127.0.0.1/\(server.port); printf '\(request)\(photo.count)\\r\\n\\r\\n' >&3; cat \(Self.photo.path) >&3; exec 3>&-"
        ] {
            let client = Process()
            client.executableURL = URL(fileURLWithPath: "/bin/bash")
            client.arguments = ["-c", script]
            try client.run()
            client.waitUntilExit()
        }
        // A client that sends a byte a second holds its own connection only: others are answered meanwhile.
        let slow = Process()
        slow.executableURL = URL(fileURLWithPath: "/bin/bash")
        slow.arguments = [
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/\(server.port); for c in P O S T ' ' /; do printf \"$c\" >&3; sleep 1; done; exec 3>&-"
        ]
        try slow.run()
        Thread.sleep(forTimeInterval: 1.5)
        let meanwhile = try server.request("/v2/health/ready")
        #expect(meanwhile.status == 200 && slow.isRunning)
        slow.waitUntilExit()
        let good = try server.request("/v1/models/cifar/classify", method: "POST", body: photo)
        #expect(good.status == 200 && (good.json["top"] as? [[String: Any]])?.first?["label"] as? String == "cat", "\(good.text)")
        let (status, said) = server.stop()
        #expect(status == 0, "\(said)")
    }

    /// A --model that is not NAME=PATH, or names no model, is one line and status 2 (no server starts).
    @Test func badModelOptionsAreRefused() throws {
        for (spec, says) in [
            ("cifar=", "expected NAME=PATH"), ("=x", "expected NAME=PATH"), ("cifar", "expected NAME=PATH"), ("c=nothere", "nothere")
        ] {
            let process = Process()
            process.executableURL = CommandLineTests.executable
            process.arguments = ["serve", "--port", "0", "--model", spec]
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 2 && said.contains(says), "\(spec): \(said)")
        }
    }

    /// SIGTERM while a request waits: the server finishes it if it can within --drain-timeout, else exits 0 then.
    @Test func aStopWaitsForTheDrainTimeoutAtMost() throws {
        // A lone request waits up to 20 s for a fuller batch: longer than the drain allows.
        let server = try Server(["--model", "cifar=builtin:cifar10-vit", "--max-queue-delay", "20000000", "--drain-timeout", "1"])
        let photo = try Data(contentsOf: Self.photo)
        Thread.detachNewThread { _ = try? server.request("/v1/models/cifar/classify", method: "POST", body: photo) }
        Thread.sleep(forTimeInterval: 0.5)
        let stopped = Date()
        let (status, said) = server.stop()
        #expect(status == 0, "\(said)")
        #expect(said.contains("after --drain-timeout 1.0 s were dropped"), "\(said)")
        #expect(Date().timeIntervalSince(stopped) < 15)
    }
}
