import Foundation

/// The MQTT quality-of-service level of a publish or a subscription.
public enum MQTTQoS: Int32, Sendable, Hashable, Codable, CaseIterable, Comparable {
    /// At most once: fire and forget.
    case atMostOnce = 0
    /// At least once: acknowledged by PUBACK; the receiver may see duplicates.
    case atLeastOnce = 1
    /// Exactly once: acknowledged by PUBCOMP after a four-packet handshake.
    case exactlyOnce = 2

    public static func < (lhs: MQTTQoS, rhs: MQTTQoS) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The MQTT protocol version spoken to the broker.
public enum MQTTProtocolVersion: Sendable, Hashable {
    /// MQTT 3.1.1: no properties, no reason codes.
    case v311
    /// MQTT 5 (the default): properties, reason codes, session expiry, Will delay.
    case v5
}

/// One MQTT 5 user property: a name/value pair of UTF-8 strings. Names may repeat.
public struct MQTTUserProperty: Sendable, Hashable, Codable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The MQTT 5 properties of a PUBLISH (and of a Will) that this client reads and writes.
///
/// All of them are ignored when the client speaks MQTT 3.1.1.
public struct MQTTPublishProperties: Sendable, Hashable {
    /// User properties, in order.
    public var userProperties: [MQTTUserProperty]
    /// How long until the broker discards the message, retained copies included (MQTT 5 Message Expiry Interval: sent
    /// in whole seconds, rounded up; on a received message, what is left of it).
    public var messageExpiry: Duration?
    /// The MIME type of the payload.
    public var contentType: String?
    /// Correlation data for request/response.
    public var correlationData: [UInt8]?
    /// The topic a response should be published on.
    public var responseTopic: String?
    /// `true` when the payload is declared to be UTF-8 text (payload format indicator 1).
    public var payloadIsUTF8: Bool?

    public init(
        userProperties: [MQTTUserProperty] = [],
        messageExpiry: Duration? = nil,
        contentType: String? = nil,
        correlationData: [UInt8]? = nil,
        responseTopic: String? = nil,
        payloadIsUTF8: Bool? = nil
    ) {
        self.userProperties = userProperties
        self.messageExpiry = messageExpiry
        self.contentType = contentType
        self.correlationData = correlationData
        self.responseTopic = responseTopic
        self.payloadIsUTF8 = payloadIsUTF8
    }

    /// No properties.
    public static let none = MQTTPublishProperties()

    /// `true` when no property is set.
    public var isEmpty: Bool { self == .none }

    /// The value of the first user property called `name`.
    public func userProperty(_ name: String) -> String? {
        userProperties.first { $0.name == name }?.value
    }
}

/// A message received from the broker.
public struct MQTTMessage: Sendable, Hashable {
    /// The topic it was published on.
    public var topic: String
    /// The payload; empty for a retained-message clear.
    public var payload: Data
    /// The QoS it was delivered at (the lower of the publish and the subscription QoS).
    public var qos: MQTTQoS
    /// `true` when it was sent because it was retained when the subscription was made
    /// (a live publish of a retained message arrives with `retain == false`).
    public var retain: Bool
    /// Its MQTT 5 properties.
    public var properties: MQTTPublishProperties

    public init(
        topic: String,
        payload: Data,
        qos: MQTTQoS = .atMostOnce,
        retain: Bool = false,
        properties: MQTTPublishProperties = .none
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }
}

/// Subscription options (MQTT 5; only `qos` is used with MQTT 3.1.1).
public struct MQTTSubscribeOptions: Sendable, Hashable {
    /// The maximum QoS the broker may deliver at.
    public var qos: MQTTQoS
    /// Do not deliver messages published by this client itself.
    public var noLocal: Bool
    /// Deliver messages with the retain flag as the publisher set it, rather than cleared.
    public var retainAsPublished: Bool
    /// When retained messages are sent for this subscription.
    public var retainHandling: RetainHandling

    /// When the broker sends retained messages for a subscription (MQTT 5).
    public enum RetainHandling: Int32, Sendable, Hashable {
        /// Every time the subscription is made.
        case sendOnSubscribe = 0
        /// Only when the subscription did not exist yet.
        case sendIfNew = 1
        /// Never.
        case doNotSend = 2
    }

    public init(
        qos: MQTTQoS = .atLeastOnce,
        noLocal: Bool = false,
        retainAsPublished: Bool = false,
        retainHandling: RetainHandling = .sendOnSubscribe
    ) {
        self.qos = qos
        self.noLocal = noLocal
        self.retainAsPublished = retainAsPublished
        self.retainHandling = retainHandling
    }
}

/// A change of the connection's state, reported on ``MQTTClient/events``.
public enum MQTTConnectionEvent: Sendable, Hashable {
    /// The broker accepted the connection. `sessionPresent` says whether it kept a session from before.
    /// `reconnect` is `false` for the first connection and `true` after an automatic reconnect.
    case connected(sessionPresent: Bool, reconnect: Bool)
    /// The connection was lost (or refused while reconnecting). The client keeps trying to reconnect
    /// unless it is shutting down.
    case disconnected(MQTTError)
    /// Subscriptions were sent again after a reconnect to a broker that had kept no session.
    case resubscribed(count: Int)
}
