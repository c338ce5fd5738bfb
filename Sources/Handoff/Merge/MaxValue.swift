/// A value that merges to the largest one seen.
///
/// Sound as long as `T`'s `<` is a total order in which values that compare equal are the same (not true of
/// floating-point NaN, or of types that compare only part of themselves). Encoded as the bare value.
public struct MaxValue<T: Comparable & Codable & Sendable>: HandoffMergeable, Codable, Sendable {
    /// The largest value seen.
    public var value: T

    /// Wraps `value`.
    public init(_ value: T) {
        self.value = value
    }

    /// The larger of the two.
    public func merged(with other: MaxValue<T>) -> MaxValue<T> {
        other.value > value ? other : self
    }

    /// Decodes the bare value.
    public init(from decoder: any Decoder) throws {
        value = try decoder.singleValueContainer().decode(T.self)
    }

    /// Encodes the bare value.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}

extension MaxValue: Equatable where T: Equatable {}
extension MaxValue: Hashable where T: Hashable {}

/// A value that merges to the smallest one seen.
///
/// Sound as long as `T`'s `<` is a total order in which values that compare equal are the same (not true of
/// floating-point NaN, or of types that compare only part of themselves). Encoded as the bare value.
public struct MinValue<T: Comparable & Codable & Sendable>: HandoffMergeable, Codable, Sendable {
    /// The smallest value seen.
    public var value: T

    /// Wraps `value`.
    public init(_ value: T) {
        self.value = value
    }

    /// The smaller of the two.
    public func merged(with other: MinValue<T>) -> MinValue<T> {
        other.value < value ? other : self
    }

    /// Decodes the bare value.
    public init(from decoder: any Decoder) throws {
        value = try decoder.singleValueContainer().decode(T.self)
    }

    /// Encodes the bare value.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}

extension MinValue: Equatable where T: Equatable {}
extension MinValue: Hashable where T: Hashable {}
