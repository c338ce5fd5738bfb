import Foundation
import Handoff
import HandoffMQTT
import Logging
import MosquittoClient
import ServiceLifecycle

/// Owns a process's shared broker connection (an ``MQTTHandoffTransport``) in a `ServiceGroup`: it keeps the
/// connection open while the group runs and shuts it down when the group stops.
///
/// Place it FIRST in the group, before every ``HandoffService`` using its transport: a group stops its services in
/// reverse order, so the connection outlives the handoffs those services initiate at shutdown.
///
/// ```swift
/// let connection = try await MQTTHandoffTransportService.connect(configuration: MQTTConfiguration(url: url))
/// let handoffs = HandoffService(transport: connection.transport, participants: [counter])
/// let group = ServiceGroup(services: [connection, handoffs, app], gracefulShutdownSignals: [.sigterm],
///                          logger: logger)
/// ```
public struct MQTTHandoffTransportService: Service {
    /// The connection, to share with every ``HandoffService`` of the process.
    public let transport: MQTTHandoffTransport
    /// Where handoffs this participant won but could not give back or dead-letter at shutdown are written
    /// (``HandoffFallbackStore`` layout); `nil`: they are only logged.
    public let fallbackDirectory: URL?
    private let logger: Logger

    /// Wraps a connected transport; the service shuts it down when it stops.
    public init(transport: MQTTHandoffTransport, fallbackDirectory: URL? = nil, logger: Logger = Logger(label: "handoff.mqtt")) {
        self.transport = transport
        self.fallbackDirectory = fallbackDirectory
        self.logger = logger
    }

    /// Connects to the broker (see `MQTTHandoffTransport.connect(configuration:options:origin:logger:)`) and
    /// wraps the transport.
    public static func connect(
        configuration: MQTTConfiguration,
        options: MQTTHandoffTransport.Options = .init(),
        origin: HandoffOrigin = .current(),
        fallbackDirectory: URL? = nil,
        logger: Logger = Logger(label: "handoff.mqtt")
    ) async throws -> MQTTHandoffTransportService {
        MQTTHandoffTransportService(
            transport: try await MQTTHandoffTransport.connect(
                configuration: configuration,
                options: options,
                origin: origin,
                logger: logger
            ),
            fallbackDirectory: fallbackDirectory,
            logger: logger
        )
    }

    /// Waits for the group's graceful shutdown (or cancellation), then disconnects from the broker (bounded by
    /// the transport's `settleTimeout` and the client's `shutdownTimeout`). Handoffs won and not merged are given
    /// back first (see `MQTTHandoffTransport.Settlement`); those the broker did not take go to the fallback
    /// directory.
    public func run() async throws {
        try? await gracefulShutdown()
        let settlement = await transport.shutdown()
        guard let fallbackDirectory, !settlement.unstored.isEmpty else { return }
        let store = HandoffFallbackStore(directory: fallbackDirectory)
        for envelope in settlement.unstored {
            var metadata: Logger.Metadata = ["handoff.label": "\(envelope.label)", "handoff.id": "\(envelope.id)"]
            do {
                metadata["handoff.fallback_file"] = "\(try store.save(envelope))"
                logger.error("a won handoff that could not be given back was written to the fallback directory", metadata: metadata)
            } catch {
                metadata["handoff.error"] = "\(error)"
                logger.error(
                    "a won handoff that could not be given back could not be written to the fallback directory either", metadata: metadata)
            }
        }
    }
}
