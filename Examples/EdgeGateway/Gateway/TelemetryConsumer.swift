import EdgeGatewayKit
import Foundation
import HandoffService
import Logging
import MosquittoClient
import ServiceLifecycle
import Synchronization

/// Consumes the sensors' readings through a persistent MQTT session shared by primary and standby (a fixed client
/// id, clean start off, a session expiry): while neither is connected the broker queues the readings, and the
/// one that attaches next receives them. It attaches only once the gateway holds the latest state: the primary
/// after taking over what was waiting at start, the standby after merging the primary's handoff (or, when the
/// primary crashed, its last checkpoint).
struct TelemetryConsumer: Service {
    enum Role: String { case primary, standby }

    let role: Role
    let aggregator: Aggregator
    let handoffs: HandoffService
    let configuration: MQTTConfiguration
    let prefix: String
    let active: Shared<Bool>
    /// When the graceful shutdown (SIGTERM) reached the consumer, seconds since 1970.
    let shutdownRequestedAt: Shared<Double?>
    let logger: Logger

    func run() async throws {
        switch role {
        case .primary:
            await handoffs.waitUntilReady()
        case .standby:
            logger.info("standby: waiting for the primary's handoff (or its last checkpoint) before consuming telemetry")
            var takeovers = aggregator.takeovers.cancelOnGracefulShutdown().makeAsyncIterator()
            guard let takeover = await takeovers.next() else { return }
            logger.info(
                "standby: took over the primary's state",
                metadata: [
                    "handoff.id": "\(takeover.handoffID)", "readings": "\(takeover.readings)",
                    "from_checkpoint": "\(takeover.fromCheckpoint)",
                ]
            )
        }
        guard !Task.isShuttingDownGracefully else { return }

        let client = try MQTTClient(configuration: configuration, logger: logger)
        let messages = client.messages()
        try await client.connect()
        try await client.subscribe(TelemetryTopics.allSensors(prefix: prefix), options: MQTTSubscribeOptions(qos: .atLeastOnce))
        active.withLock { $0 = true }
        logger.info("consuming telemetry", metadata: ["mqtt.client_id": "\(client.clientID)"])

        // Fenced (the standby merged this gateway's last checkpoint while it was cut off): stop consuming, so that
        // the two gateways do not take turns on the shared telemetry session.
        let fenced = Task { [aggregator, logger] in
            for await fencing in aggregator.fencings {
                logger.error(
                    "fenced: the standby owns the state now; detaching from the telemetry session",
                    metadata: ["reason": "\(fencing.reason)"])
                await client.shutdown()
                return
            }
        }
        defer { fenced.cancel() }
        let decoder = JSONDecoder()
        await withGracefulShutdownHandler {
            // Ends when the client is shut down, after every reading already received has been counted.
            for await message in messages {
                guard let reading = try? decoder.decode(Reading.self, from: message.payload) else {
                    logger.warning("not a reading; ignored", metadata: ["mqtt.topic": "\(message.topic)"])
                    continue
                }
                await aggregator.record(reading)
            }
        } onGracefulShutdown: {
            shutdownRequestedAt.withLock { $0 = Date().timeIntervalSince1970 }
            // Detach from the session: from now on the broker queues the readings for the successor.
            Task { await client.shutdown() }
        }
        active.withLock { $0 = false }
        logger.info("telemetry session detached; readings now queue on the broker for the successor")
    }
}
