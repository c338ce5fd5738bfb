import Foundation
import Handoff

/// What the gateway knows about one sensor: counts, min/max/mean, last-seen time, and the last sequence number
/// counted, which is what makes a redelivered reading count once.
public struct SensorStats: Codable, Sendable, Hashable {
    /// Readings counted.
    public var count = 0
    /// The smallest value seen.
    public var min = Double.infinity
    /// The largest value seen.
    public var max = -Double.infinity
    /// The sum of the values (for the mean).
    public var sum = 0.0
    /// The sequence number of the last reading counted (0: none yet).
    public var lastSeq = 0
    /// When the last reading was measured, seconds since 1970.
    public var lastSeen = 0.0
    /// Readings skipped because their sequence number was already counted (MQTT QoS 1 redeliveries).
    public var duplicates = 0
    /// Sequence numbers that never arrived (a gap: a reading lost before the gateway).
    public var missing = 0

    /// An empty record.
    public init() {}

    /// The mean value, or nil before the first reading.
    public var mean: Double? { count > 0 ? sum / Double(count) : nil }

    /// Counts `reading` unless its sequence number was counted already; returns whether it was counted.
    @discardableResult
    public mutating func record(_ reading: Reading) -> Bool {
        guard reading.seq > lastSeq else {
            duplicates += 1
            return false
        }
        missing += reading.seq - lastSeq - 1
        lastSeq = reading.seq
        count += 1
        sum += reading.value
        min = Swift.min(min, reading.value)
        max = Swift.max(max, reading.value)
        lastSeen = Swift.max(lastSeen, reading.time)
        return true
    }
}

extension SensorStats: HandoffMergeable {
    /// The record that has seen more of the sensor's stream: a sensor's readings are counted in sequence order, so
    /// the record with the higher `lastSeq` includes everything the other one counted. Commutative, associative
    /// and idempotent (ties are broken on every field), so merging a handoff twice changes nothing.
    public func merged(with other: SensorStats) -> SensorStats {
        Self.orderKey(other).lexicographicallyPrecedes(Self.orderKey(self)) || Self.orderKey(self) == Self.orderKey(other)
            ? self : other
    }

    private static func orderKey(_ stats: SensorStats) -> [Double] {
        [
            Double(stats.lastSeq), Double(stats.count), stats.sum, stats.lastSeen, Double(stats.duplicates),
            Double(stats.missing), stats.min.isFinite ? -stats.min : 0, stats.max.isFinite ? stats.max : 0,
        ]
    }
}

/// Every sensor's record, by sensor id: the state the gateway hands off.
public typealias GatewayState = [String: SensorStats]

extension Dictionary where Key == String, Value == SensorStats {
    /// Readings counted over all sensors.
    public var totalReadings: Int { values.reduce(0) { $0 + $1.count } }
}
