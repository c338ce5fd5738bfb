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

    /// Wraps a connected transport; the service shuts it down when it stops.
    public init(transport: MQTTHandoffTransport) {
        self.transport = transport
    }

    /// Connects to the broker (see `MQTTHandoffTransport.connect(configuration:options:origin:logger:)`) and
    /// wraps the transport.
    public static func connect(
        configuration: MQTTConfiguration,
        options: MQTTHandoffTransport.Options = .init(),
        origin: HandoffOrigin = .current(),
        logger: Logger = Logger(label: "handoff.mqtt")
    ) async throws -> MQTTHandoffTransportService {
        MQTTHandoffTransportService(
            transport: try await MQTTHandoffTransport.connect(
                configuration: configuration,
                options: options,
                origin: origin,
                logger: logger
            )
        )
    }

    /// Waits for the group's graceful shutdown (or cancellation), then disconnects from the broker (bounded by
    /// the client's `shutdownTimeout`).
    public func run() async throws {
        try? await gracefulShutdown()
        await transport.shutdown()
    }
}
