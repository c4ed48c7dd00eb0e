/// The JSON of one image's classification, as `vit predict --json` prints it and `vit serve` answers:
/// {"file": ..., "top": [{"index", "label", "probability"}], "logits": [...]} (no "file" for an uploaded image).
public struct PredictionRecord: Encodable, Sendable {
    public struct Entry: Encodable, Sendable {
        public let index: Int
        public let label: String
        public let probability: Float
        public init(index: Int, label: String, probability: Float) {
            self.index = index
            self.label = label
            self.probability = probability
        }
    }
    public let file: String?
    public let top: [Entry]
    public let logits: [Float]?

    public init(file: String?, top: [Entry], logits: [Float]?) {
        self.file = file
        self.top = top
        self.logits = logits
    }
}
