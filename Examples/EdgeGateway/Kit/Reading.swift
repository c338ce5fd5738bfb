import Foundation

/// One telemetry reading, published by a sensor on `telemetry/sensors/<sensor>` as JSON (QoS 1).
public struct Reading: Codable, Sendable, Hashable {
    /// The sensor's id, also the last topic level.
    public var sensor: String
    /// The sensor's sequence number: 1 for its first reading, then one more for each reading.
    public var seq: Int
    /// The measured value.
    public var value: Double
    /// When it was measured, in seconds since 1970.
    public var time: Double

    /// Creates a reading.
    public init(sensor: String, seq: Int, value: Double, time: Double) {
        self.sensor = sensor
        self.seq = seq
        self.value = value
        self.time = time
    }
}

/// The telemetry topics.
public enum TelemetryTopics {
    /// The topic of one sensor's readings.
    public static func sensor(_ id: String, prefix: String = "telemetry") -> String { "\(prefix)/sensors/\(id)" }
    /// The filter matching every sensor.
    public static func allSensors(prefix: String = "telemetry") -> String { "\(prefix)/sensors/+" }
    /// The sensor ids of a simulated fleet of `count` sensors.
    public static func sensorIDs(count: Int) -> [String] { (1...max(1, count)).map { "sensor-\($0)" } }
}
