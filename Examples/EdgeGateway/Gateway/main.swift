// edge-gateway: an IoT edge gateway that aggregates sensor telemetry (counts, min/max/mean, last seen) and hands
// its state to a standby when it is stopped.
//
//   edge-gateway --role primary|standby --broker mqtt://127.0.0.1:1883 [--gateway-id gateway-1]
//                [--prefix telemetry] [--budget-ms 5000] [--status status.json] [--report report.json]
//                [--checkpoint-ms 0] [--will-delay 5]
//
// Run a primary and a standby with the same --gateway-id. SIGTERM to the primary: it stops consuming, hands its
// state off, and the standby merges it, then attaches to the same telemetry session and continues: the readings
// published in between were queued by the broker, and redelivered ones are recognised by their sequence numbers.
//
// With --checkpoint-ms N (N > 0) the state is also checkpointed on the broker every N ms, so that a primary killed
// without warning (SIGKILL) loses at most the readings of one interval: --will-delay seconds after its connection
// died, the broker publishes its MQTT Will, and the standby merges the primary's last checkpoint and takes over.
import EdgeGatewayKit
import Foundation
import Handoff
import HandoffMQTT
import HandoffService
import Logging
import MosquittoClient
import ServiceLifecycle

let logger = Logger(label: "edge-gateway")
do {
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
    guard let role = TelemetryConsumer.Role(rawValue: options.string("role", default: "primary")) else {
        throw OptionsError(description: "--role must be primary or standby")
    }
    let gatewayID = options.string("gateway-id", default: "gateway-1")
    let broker = try MQTTConfiguration(url: options.string("broker", default: "mqtt://127.0.0.1:1883"))

    // The state, as a handoff participant, and the process's one handoff connection (first: it closes last).
    let aggregator = Aggregator(label: try HandoffLabel("edge-gateway/\(gatewayID)"))
    let checkpointMs = try options.int("checkpoint-ms", default: 0)
    let connection = try await MQTTHandoffTransportService.connect(
        configuration: broker,
        options: MQTTHandoffTransport.Options(willDelay: .seconds(max(0, try options.int("will-delay", default: 5)))),
        logger: logger
    )
    let handoffs = HandoffService(
        transport: connection.transport,
        participants: [aggregator],
        configuration: .init(
            shutdownBudget: .milliseconds(try options.int("budget-ms", default: 5_000)),
            checkpointInterval: checkpointMs > 0 ? .milliseconds(checkpointMs) : nil
        ),
        logger: logger
    )

    // The telemetry session: one fixed client id for primary and standby, kept by the broker for an hour.
    var telemetry = broker
    telemetry.clientID = "edge-gateway-\(gatewayID)-telemetry"
    telemetry.cleanStart = false
    telemetry.sessionExpiry = .seconds(3_600)
    let active = Shared(false)
    let shutdownRequestedAt = Shared<Double?>(nil)
    let consumer = TelemetryConsumer(
        role: role,
        aggregator: aggregator,
        handoffs: handoffs,
        configuration: telemetry,
        prefix: options.string("prefix", default: "telemetry"),
        active: active,
        shutdownRequestedAt: shutdownRequestedAt,
        logger: logger
    )

    // Stopped in reverse order: the consumer detaches first, then the state is handed off, then the connection
    // closes, and the status file is written a last time.
    var services: [any Service] = []
    if let path = options.string("status") {
        services.append(StatusWriter(path: path, role: role.rawValue, aggregator: aggregator, active: active, logger: logger))
    }
    services += [connection, handoffs, consumer]
    try await ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()

    let state = await aggregator.handoffState
    var handedOff: GatewayReport.HandedOff?
    if let report = handoffs.shutdownReport, let outcome = report.outcomes.first {
        let acknowledgedAt =
            report.startedAt.timeIntervalSince1970 + Double(outcome.duration.components.seconds)
            + Double(outcome.duration.components.attoseconds) / 1e18
        handedOff = GatewayReport.HandedOff(
            label: outcome.label.rawValue,
            outcome: outcome.kind.rawValue,
            handoffID: outcome.handoffID?.rawValue,
            bytes: outcome.bytes,
            readings: state.totalReadings,
            sigtermToAcknowledgedMs: shutdownRequestedAt.value.map { (acknowledgedAt - $0) * 1_000 }
        )
    }
    if let path = options.string("report") {
        try JSONFile.write(
            GatewayReport(role: role.rawValue, sensors: state, takeover: await aggregator.takeover, handedOff: handedOff),
            to: path
        )
    }
    logger.info("stopped", metadata: ["readings": "\(state.totalReadings)", "handoff": "\(handedOff?.outcome ?? "none")"])
} catch {
    // One line and status 1 (a wrong broker URL, an unreachable broker, bad options): no backtrace, no log noise.
    FileHandle.standardError.write(Data("edge-gateway: error: \(error)\n".utf8))
    exit(1)
}
