// edge-sensors: simulated sensors publishing telemetry readings on MQTT, for the edge gateway example.
//
//   edge-sensors --broker mqtt://127.0.0.1:1883 [--sensors 5] [--rate 20] [--prefix telemetry] [--report sent.json]
//
// Each sensor publishes `rate` readings per second on `<prefix>/sensors/<id>` (QoS 1), numbered 1, 2, 3, ... and
// waits for each acknowledgement before the next (one sensor's readings stay in order). On SIGTERM or SIGINT
// the sensors stop, and how many readings each one got acknowledged is written to --report.
import EdgeGatewayKit
import Foundation
import Logging
import MosquittoClient
import ServiceLifecycle
import Synchronization

/// Publishes the readings of every sensor until graceful shutdown.
struct SensorFleet: Service {
    let client: MQTTClient
    let sensors: [String]
    let interval: Duration
    let prefix: String
    let sent: Counts
    let logger: Logger

    /// Acknowledged readings per sensor.
    final class Counts: Sendable {
        let values = Mutex<[String: Int]>([:])
    }

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            for (index, sensor) in sensors.enumerated() {
                group.addTask { await publish(sensor, phase: Double(index)) }
            }
        }
        await client.shutdown()
    }

    /// Publishes one sensor's readings until graceful shutdown; a reading is counted once acknowledged.
    private func publish(_ sensor: String, phase: Double) async {
        var seq = 0
        let clock = ContinuousClock()
        var next = clock.now
        while !Task.isShuttingDownGracefully {
            seq += 1
            let time = Date().timeIntervalSince1970
            let reading = Reading(sensor: sensor, seq: seq, value: 20 + 5 * sin(time + phase), time: time)
            do {
                try await client.publish(
                    TelemetryTopics.sensor(sensor, prefix: prefix),
                    payload: try JSONEncoder().encode(reading),
                    qos: .atLeastOnce
                )
                sent.values.withLock { $0[sensor] = seq }
            } catch {
                logger.error("reading not acknowledged; stopping this sensor", metadata: ["sensor": "\(sensor)", "error": "\(error)"])
                return
            }
            next = next.advanced(by: interval)
            try? await Task.sleep(until: next, clock: clock)
        }
    }
}

let logger = Logger(label: "edge-sensors")
do {
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
    let sensors = TelemetryTopics.sensorIDs(count: try options.int("sensors", default: 5))
    let rate = max(1, try options.int("rate", default: 20))
    let client = try MQTTClient(
        configuration: try MQTTConfiguration(url: options.string("broker", default: "mqtt://127.0.0.1:1883")), logger: logger)
    try await client.connect()
    let fleet = SensorFleet(
        client: client,
        sensors: sensors,
        interval: .nanoseconds(1_000_000_000 / rate),
        prefix: options.string("prefix", default: "telemetry"),
        sent: SensorFleet.Counts(),
        logger: logger
    )
    logger.info("publishing", metadata: ["sensors": "\(sensors.count)", "rate": "\(rate)/s each"])
    let group = ServiceGroup(services: [fleet], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    try await group.run()
    let sent = fleet.sent.values.withLock { $0 }
    if let path = options.string("report") {
        try JSONFile.write(SensorsReport(sent: sent), to: path)
    }
    logger.info("stopped", metadata: ["sent": "\(sent.values.reduce(0, +))"])
} catch {
    // One line and status 1 (a wrong broker URL, an unreachable broker, bad options): no backtrace, no log noise.
    FileHandle.standardError.write(Data("edge-sensors: error: \(error)\n".utf8))
    exit(1)
}
