/// A value handed to concurrent work that the sender no longer touches, or whose parts each worker writes apart (a
/// buffer's disjoint rows): the compiler cannot see that, so the promise is written here once.
public struct UncheckedSendable<Value>: @unchecked Sendable {
    public var value: Value
    public init(_ value: Value) { self.value = value }
}
