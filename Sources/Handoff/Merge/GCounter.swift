/// A grow-only counter that merges without double counting: each replica counts its own increments, and a
/// merge keeps the larger count of each replica.
///
/// Give every replica (process instance) its own name; the counter's value is the sum over replicas.
/// Encoded as a JSON object of replica names to counts.
public struct GCounter: HandoffMergeable, Codable, Hashable, Sendable {
    /// The count of each replica.
    public private(set) var counts: [String: UInt64]

    /// A counter at zero.
    public init() {
        counts = [:]
    }

    /// A counter with these per-replica counts.
    public init(counts: [String: UInt64]) {
        self.counts = counts.filter { $0.value > 0 }
    }

    /// The sum of all replicas' counts (saturating at `UInt64.max`).
    public var value: UInt64 {
        counts.values.reduce(0) { sum, count in
            let (total, overflow) = sum.addingReportingOverflow(count)
            return overflow ? .max : total
        }
    }

    /// Adds `amount` to `replica`'s count (saturating at `UInt64.max`).
    public mutating func increment(by amount: UInt64 = 1, replica: String) {
        guard amount > 0 else { return }
        let (total, overflow) = counts[replica, default: 0].addingReportingOverflow(amount)
        counts[replica] = overflow ? .max : total
    }

    /// Per replica, the larger count.
    public func merged(with other: GCounter) -> GCounter {
        var result = self
        result.counts.merge(other.counts, uniquingKeysWith: max)
        return result
    }

    /// Decodes a JSON object of replica names to counts.
    public init(from decoder: any Decoder) throws {
        self.init(counts: try decoder.singleValueContainer().decode([String: UInt64].self))
    }

    /// Encodes a JSON object of replica names to counts.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(counts)
    }
}

/// A counter that can go up and down and still merges without double counting: two ``GCounter``s, one of
/// increments and one of decrements.
public struct PNCounter: HandoffMergeable, Codable, Hashable, Sendable {
    /// The increments of each replica.
    public private(set) var increments: GCounter
    /// The decrements of each replica.
    public private(set) var decrements: GCounter

    /// A counter at zero.
    public init() {
        increments = GCounter()
        decrements = GCounter()
    }

    /// A counter made of these increments and decrements.
    public init(increments: GCounter, decrements: GCounter) {
        self.increments = increments
        self.decrements = decrements
    }

    /// Increments minus decrements, clamped to `Int64`.
    public var value: Int64 {
        Int64(clamping: Int128(increments.value) - Int128(decrements.value))
    }

    /// Adds `amount` to `replica`'s increments.
    public mutating func increment(by amount: UInt64 = 1, replica: String) {
        increments.increment(by: amount, replica: replica)
    }

    /// Adds `amount` to `replica`'s decrements.
    public mutating func decrement(by amount: UInt64 = 1, replica: String) {
        decrements.increment(by: amount, replica: replica)
    }

    /// Increments and decrements merged separately.
    public func merged(with other: PNCounter) -> PNCounter {
        PNCounter(increments: increments.merged(with: other.increments), decrements: decrements.merged(with: other.decrements))
    }
}
