import Foundation
import Prometheus

/// What `GET /metrics` shows, in Prometheus' text format (swift-prometheus): requests by model, endpoint and status,
/// their latency, each model's batch sizes, images inferred and queue depth.
final class ServerMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private static let latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    private static let batchBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128]

    private func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "swiftvit", metricName: metric, unitName: unit, helpText: help)
    }

    /// A request answered: `endpoint` is the route's pattern (`/v2/models/{name}/infer`), `model` its model or "".
    func answered(model: String, endpoint: String, status: Int, seconds: Double) {
        let labels = [("model", model), ("endpoint", endpoint), ("status", String(status))]
        registry.makeCounter(descriptor: name("requests", "total", "Requests answered, by model, endpoint and status."), labels: labels)
            .increment()
        registry.makeValueHistogram(
            descriptor: name("request_duration", "seconds", "Seconds from a request's arrival to its answer."),
            labels: [("model", model), ("endpoint", endpoint)], buckets: Self.latencyBuckets
        ).record(seconds)
    }

    /// A batch of `size` images ran on `model`.
    func batch(model: String, size: Int) {
        registry.makeValueHistogram(
            descriptor: name("batch", "size", "Images in each batch a model ran."), labels: [("model", model)], buckets: Self.batchBuckets
        ).record(Double(size))
        registry.makeCounter(descriptor: name("images", "total", "Images inferred (rate() gives images/s)."), labels: [("model", model)])
            .increment(by: Int64(size))
    }

    /// Requests waiting for `model` now.
    func queueDepth(model: String, _ depth: Int) {
        registry.makeGauge(descriptor: name("queue", "depth", "Requests waiting in a model's queue."), labels: [("model", model)])
            .set(Double(depth))
    }

    var text: String { registry.emitToString() }
}
