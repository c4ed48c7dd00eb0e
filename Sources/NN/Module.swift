import Tensors

/// A layer or a model: a tree of modules whose stored `Tensor` properties are its parameters.
///
/// Parameters and children are found by reflection over stored properties, and named as checkpoints name them:
/// the property name in snake_case, joined by dots, with array elements numbered (`blocks.0.attn.qkv.weight`).
/// So a model written with timm's attribute names reads and writes timm checkpoints without a key map.
open class Module {
    /// Training mode (dropout and drop path active) or evaluation mode.
    public private(set) var training = true

    public init() {}

    /// Every parameter with its dotted name, in declaration order.
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var result: [(String, Tensor)] = []
        collect(prefix: "", into: &result)
        return result
    }

    public func parameters() -> [Tensor] { namedParameters().map(\.tensor) }

    /// The direct submodules with their names.
    public func children() -> [(name: String, module: Module)] {
        var result: [(String, Module)] = []
        for child in Mirror(reflecting: self).allChildren {
            guard let label = child.label else { continue }
            let name = checkpointNames[label] ?? Module.checkpointName(label)
            switch unwrap(child.value) {
            case let module as Module: result.append((name, module))
            case let modules as [Module]:
                for (i, module) in modules.enumerated() { result.append(("\(name).\(i)", module)) }
            default: break
            }
        }
        return result
    }

    /// This module and every module below it, parents before children.
    public func modules() -> [Module] {
        var result: [Module] = [self], index = 0
        while index < result.count {
            result += result[index].children().map(\.module)
            index += 1
        }
        return result
    }

    private func collect(prefix: String, into result: inout [(String, Tensor)]) {
        for child in Mirror(reflecting: self).allChildren {
            guard let label = child.label, case let tensor as Tensor = unwrap(child.value) else { continue }
            result.append((prefix + (checkpointNames[label] ?? Module.checkpointName(label)), tensor))
        }
        for (name, module) in children() { module.collect(prefix: prefix + name + ".", into: &result) }
    }

    /// Property labels whose checkpoint names the snake_case rule cannot spell (OpenAI's `ln_1`): label -> name.
    open var checkpointNames: [String: String] { [:] }

    /// Switches this module and all below it to training (true) or evaluation (false) mode.
    open func train(_ on: Bool = true) {
        training = on
        for (_, child) in children() { child.train(on) }
    }

    public func eval() { train(false) }

    /// The parameters by name, sharing storage with the model.
    public func stateDict() -> [String: Tensor] {
        Dictionary(namedParameters().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
    }

    /// Copies `state` into the parameters. Every problem (missing keys, unexpected keys, shape mismatches) is
    /// collected and reported together. `takingStorage` hands the tensors over instead: each parameter adopts its
    /// tensor's storage and dtype (a checkpoint just read, which nothing else holds), so no second copy is made.
    public func load(stateDict state: [String: Tensor], strict: Bool = true, takingStorage: Bool = false) throws {
        var missing: [String] = [], mismatched: [String] = []
        let named = namedParameters()
        for (name, parameter) in named {
            guard let source = state[name] else { missing.append(name); continue }
            if source.shape != parameter.shape {
                mismatched.append("\(name): checkpoint \(source.shape), model \(parameter.shape)")
            }
        }
        let known = Set(named.map(\.name))
        let unexpected = state.keys.filter { !known.contains($0) }.sorted()
        if !mismatched.isEmpty || (strict && (!missing.isEmpty || !unexpected.isEmpty)) {
            throw StateDictError(missing: missing, unexpected: strict ? unexpected : [], mismatched: mismatched)
        }
        for (name, parameter) in named {
            guard let source = state[name] else { continue }
            if takingStorage { parameter.adopt(source) } else { parameter.assign(source) }
        }
    }

    /// Total number of parameter values.
    public var parameterCount: Int { parameters().reduce(0) { $0 + $1.count } }

    /// `clsToken` -> `cls_token`, `fc1` -> `fc1`: Swift property names to checkpoint key names.
    static func checkpointName(_ label: String) -> String {
        var out = ""
        for ch in label {
            if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }
}

/// Why a state dict did not fit a model; every problem at once.
public struct StateDictError: Error, CustomStringConvertible {
    public let missing: [String]
    public let unexpected: [String]
    public let mismatched: [String]

    public var description: String {
        var parts: [String] = []
        if !missing.isEmpty { parts.append("missing keys: \(missing.joined(separator: ", "))") }
        if !unexpected.isEmpty { parts.append("unexpected keys: \(unexpected.joined(separator: ", "))") }
        if !mismatched.isEmpty { parts.append("shape mismatches: \(mismatched.joined(separator: "; "))") }
        return "state dict does not fit the model: " + parts.joined(separator: "; ")
    }
}

/// Looks through optionals so that `var bias: Tensor?` and `let head: Linear?` are found when present.
private func unwrap(_ value: Any) -> Any? {
    let mirror = Mirror(reflecting: value)
    guard mirror.displayStyle == .optional else { return value }
    return mirror.children.first.map { unwrap($0.value) } ?? nil
}

private extension Mirror {
    /// Children including those declared in superclasses (superclass first).
    var allChildren: [Mirror.Child] {
        (superclassMirror?.allChildren ?? []) + Array(children)
    }
}

/// A tensor a module holds that is not a parameter (found by no reflection, saved in no checkpoint): a fixed table
/// such as a sin-cos position signal.
public final class FixedTensor {
    public let tensor: Tensor
    public init(_ tensor: Tensor) { self.tensor = tensor }
}
