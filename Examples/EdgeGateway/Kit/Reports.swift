import Foundation

/// What the sensors simulator writes when it stops: how many readings each sensor published (acknowledged).
public struct SensorsReport: Codable, Sendable {
    /// Readings acknowledged by the broker, by sensor id.
    public var sent: [String: Int]

    /// Creates a report.
    public init(sent: [String: Int]) { self.sent = sent }
}

/// How a standby took over: written by the gateway when it merged its predecessor's handoff, or the last checkpoint
/// of a predecessor that died without handing off.
public struct Takeover: Codable, Sendable {
    /// The handoff's (or checkpoint's) id.
    public var handoffID: String
    /// The predecessor's instance.
    public var from: String
    /// Readings in the handed-off state.
    public var readings: Int
    /// When the handoff was merged, seconds since 1970.
    public var mergedAt: Double
    /// Whether it was the last checkpoint of a predecessor that crashed, rather than a handoff.
    public var fromCheckpoint: Bool
    /// When the predecessor made it (snapshotted its state), seconds since 1970, to the millisecond.
    public var createdAt: Double

    /// Creates a takeover record.
    public init(handoffID: String, from: String, readings: Int, mergedAt: Double, fromCheckpoint: Bool = false, createdAt: Double = 0) {
        self.handoffID = handoffID
        self.from = from
        self.readings = readings
        self.mergedAt = mergedAt
        self.fromCheckpoint = fromCheckpoint
        self.createdAt = createdAt
    }
}

/// The gateway's live status, rewritten while it runs (for the demo driver and for operators).
public struct GatewayStatus: Codable, Sendable {
    /// `primary` or `standby`.
    public var role: String
    /// Whether it consumes telemetry.
    public var active: Bool
    /// Readings counted, by sensor id.
    public var counted: [String: Int]
    /// The sequence number of the last reading counted, by sensor id (with readings lost in a crash, `counted`
    /// stays below what a sensor sent, but this one catches up).
    public var lastSeq: [String: Int]
    /// How it took over, if it did.
    public var takeover: Takeover?

    /// Creates a status.
    public init(role: String, active: Bool, counted: [String: Int], lastSeq: [String: Int] = [:], takeover: Takeover?) {
        self.role = role
        self.active = active
        self.counted = counted
        self.lastSeq = lastSeq
        self.takeover = takeover
    }
}

/// What the gateway writes when it stops.
public struct GatewayReport: Codable, Sendable {
    /// What it handed off at shutdown.
    public struct HandedOff: Codable, Sendable {
        /// The handoff label.
        public var label: String
        /// The outcome (`handed-off`, `budget-exceeded`, ...).
        public var outcome: String
        /// The handoff id.
        public var handoffID: String?
        /// The size of the encoded state.
        public var bytes: Int?
        /// Readings in the handed-off state.
        public var readings: Int
        /// From SIGTERM to the broker's acknowledgement, milliseconds.
        public var sigtermToAcknowledgedMs: Double?

        /// Creates the record.
        public init(
            label: String,
            outcome: String,
            handoffID: String?,
            bytes: Int?,
            readings: Int,
            sigtermToAcknowledgedMs: Double?
        ) {
            self.label = label
            self.outcome = outcome
            self.handoffID = handoffID
            self.bytes = bytes
            self.readings = readings
            self.sigtermToAcknowledgedMs = sigtermToAcknowledgedMs
        }
    }

    /// `primary` or `standby`.
    public var role: String
    /// The final per-sensor records.
    public var sensors: GatewayState
    /// How it took over, if it did.
    public var takeover: Takeover?
    /// What it handed off.
    public var handedOff: HandedOff?

    /// Creates a report.
    public init(role: String, sensors: GatewayState, takeover: Takeover?, handedOff: HandedOff?) {
        self.role = role
        self.sensors = sensors
        self.takeover = takeover
        self.handedOff = handedOff
    }
}

/// Reads and writes the JSON files the example's programs exchange.
public enum JSONFile {
    /// Writes `value` to `path` atomically (readers never see half a file).
    public static func write<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try encoder.encode(value).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// Reads a `T` from `path`, or nil when the file does not exist (yet) or is not a `T`.
    public static func read<T: Decodable>(_ type: T.Type, from path: String) -> T? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try? decoder.decode(type, from: data)
    }
}
