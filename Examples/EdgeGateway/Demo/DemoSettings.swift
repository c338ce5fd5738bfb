import EdgeGatewayKit

/// The demo's command line.
struct DemoSettings {
    /// Simulated sensors.
    var sensors: Int
    /// Readings per sensor per second.
    var rate: Int
    /// Seconds of telemetry before the primary is stopped or killed.
    var before: Int
    /// Seconds of telemetry after the standby took over.
    var after: Int

    /// Reads `--sensors`, `--rate`, `--before` and `--after`.
    init(_ options: Options) throws {
        sensors = try options.int("sensors", default: 5)
        rate = try options.int("rate", default: 20)
        before = try options.int("before", default: 3)
        after = try options.int("after", default: 2)
        guard sensors >= 1, rate >= 1 else { throw OptionsError(description: "--sensors and --rate must be positive") }
    }
}
