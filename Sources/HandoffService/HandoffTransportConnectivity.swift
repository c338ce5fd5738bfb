import Handoff
import HandoffMQTT

/// A transport that can tell whether it currently reaches its store. ``HandoffService`` uses it to tell a broker
/// that was unreachable at shutdown (``HandoffShutdownOutcome/Kind/brokerUnreachable``) from a budget that was
/// too short (``HandoffShutdownOutcome/Kind/budgetExceeded``). Transports that do not adopt it are taken as
/// connected.
public protocol HandoffTransportConnectivity: Sendable {
    /// Whether the store (for MQTT: the broker) is reachable right now.
    var isConnectedToStore: Bool { get }
}

extension MQTTHandoffTransport: HandoffTransportConnectivity {
    /// Whether the MQTT connection is up.
    public var isConnectedToStore: Bool { client.isConnected }
}
