import EdgeGatewayKit

/// The demo's command line.
struct DemoSettings {
    /// Whether to kill the primary (SIGKILL, recovery from its last checkpoint) instead of stopping it (SIGTERM,
    /// handoff).
    var crash: Bool
    /// Simulated sensors.
    var sensors: Int
    /// Readings per sensor per second.
    var rate: Int
    /// Seconds of telemetry before the primary is stopped or killed.
    var before: Int
    /// Seconds of telemetry after the standby took over.
    var after: Int
    /// Crash mode: how often the gateways checkpoint their state, milliseconds.
    var checkpointMs: Int
    /// Crash mode: the MQTT Will Delay Interval of the gateways' handoff connections, seconds.
    var willDelay: Int

    /// Reads `--crash`, `--sensors`, `--rate`, `--before`, `--after`, `--checkpoint-ms` and `--will-delay`.
    init(_ options: Options) throws {
        crash = options.flag("crash")
        sensors = try options.int("sensors", default: 5)
        rate = try options.int("rate", default: 20)
        before = try options.int("before", default: 3)
        after = try options.int("after", default: 2)
        checkpointMs = try options.int("checkpoint-ms", default: 500)
        willDelay = try options.int("will-delay", default: 1)
        guard sensors >= 1, rate >= 1, checkpointMs >= 1, willDelay >= 0 else {
            throw OptionsError(description: "--sensors, --rate and --checkpoint-ms must be positive, --will-delay not negative")
        }
    }
}
