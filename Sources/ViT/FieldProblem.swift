/// Settings that cannot work together or are out of range (thrown as `TrainingError.badFields`), each said in a few words with the fields at fault in
/// braces (`{learningRate} must be a positive number, got -1.0`): `description` shows them as Swift fields,
/// `described(naming:)` as a caller names them (the command line: its flags, `--lr`). The library reports the field,
/// the command line names the flag; each check is written once, in the library.
public struct FieldProblem: Error, CustomStringConvertible, Sendable {
    public let templates: [String]
    public init(_ templates: [String]) { self.templates = templates }
    public init(_ template: String) { self.templates = [template] }

    public var description: String { described(naming: [:]) }

    /// Each problem with its `{field}`s replaced by `names[field]`, or the field's own name; several joined by "; ".
    public func described(naming names: [String: String]) -> String {
        templates.map { template in
            var text = "", rest = template[...]
            while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
                text += rest[..<open]
                let field = String(rest[rest.index(after: open)..<close])
                text += names[field] ?? field
                rest = rest[rest.index(after: close)...]
            }
            return text + rest
        }.joined(separator: "; ")
    }
}

/// The problems found while checking a configuration's fields, in `FieldProblem`'s `{field}` form: each range check
/// is written once here, for every configuration (ViT, CLIP, DETR).
public struct FieldChecks {
    public private(set) var problems: [String] = []
    public init() {}

    /// `value` must lie in `range`: "{field} 0 is outside 1...65536".
    public mutating func within<T: Comparable>(_ field: String, _ value: T, _ range: ClosedRange<T>) {
        if !range.contains(value) { problems.append("{\(field)} \(value) is outside \(range.lowerBound)...\(range.upperBound)") }
    }

    /// A problem, said in a few words with its fields in braces, unless `ok`.
    public mutating func require(_ ok: Bool, _ problem: @autoclosure () -> String) {
        if !ok { problems.append(problem()) }
    }

    public var isEmpty: Bool { problems.isEmpty }

    /// Throws the problems found as one `FieldProblem`.
    public func check() throws { if !problems.isEmpty { throw FieldProblem(problems) } }
}
