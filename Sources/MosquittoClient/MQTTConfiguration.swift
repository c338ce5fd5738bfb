import Foundation

/// How to reach and talk to an MQTT broker.
///
/// Build one from a URL with ``init(url:)`` (`mqtt://user:password@host:1883`, `mqtts://host:8883`)
/// and adjust the fields, or set every field yourself.
public struct MQTTConfiguration: Sendable {
    /// TLS settings for `mqtts://` connections.
    public struct TLS: Sendable, Hashable {
        /// PEM file with the certificate authorities to trust. `nil` uses the system's store.
        public var caFile: String?
        /// PEM client certificate, for brokers that require client certificates.
        public var certificateFile: String?
        /// PEM private key of the client certificate.
        public var keyFile: String?
        /// Check that the broker's certificate names the host connected to. Turn off only for tests.
        public var verifyHostname: Bool

        public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, verifyHostname: Bool = true) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.verifyHostname = verifyHostname
        }
    }

    /// A Will: the message the broker publishes when this client dies without a DISCONNECT.
    public struct Will: Sendable, Hashable {
        public var topic: String
        public var payload: Data
        public var qos: MQTTQoS
        public var retain: Bool
        public var properties: MQTTPublishProperties
        /// MQTT 5 Will Delay Interval (sent in whole seconds, rounded up): a reconnect within this time suppresses the
        /// Will.
        public var delay: Duration?

        public init(
            topic: String,
            payload: Data,
            qos: MQTTQoS = .atLeastOnce,
            retain: Bool = false,
            properties: MQTTPublishProperties = .none,
            delay: Duration? = nil
        ) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
            self.properties = properties
            self.delay = delay
        }
    }

    /// Automatic reconnection with exponential backoff.
    public struct Reconnect: Sendable, Hashable {
        /// First delay after a lost connection (whole seconds, rounded up, at least 1: libmosquitto counts seconds).
        public var initialDelay: Duration
        /// Largest delay between attempts (whole seconds, rounded up, at least ``initialDelay``).
        public var maximumDelay: Duration

        public init(initialDelay: Duration = .seconds(1), maximumDelay: Duration = .seconds(10)) {
            self.initialDelay = .seconds(max(1, initialDelay.mqttSeconds))
            self.maximumDelay = .seconds(max(self.initialDelay.mqttSeconds, maximumDelay.mqttSeconds))
        }
    }

    /// Host name or address of the broker.
    public var host: String
    /// TCP port of the broker.
    public var port: Int
    /// TLS settings; `nil` for a plain TCP connection.
    public var tls: TLS?
    public var username: String?
    public var password: String?
    /// Client identifier. `nil` lets the client generate a unique one (required for clean-start sessions only).
    public var clientID: String?
    /// Keep-alive interval (sent in whole seconds, rounded up; libmosquitto accepts 5 s or more).
    public var keepAlive: Duration
    public var protocolVersion: MQTTProtocolVersion
    /// Start with a new session (`true`) or resume the broker's session for this client id (`false`).
    public var cleanStart: Bool
    /// MQTT 5 Session Expiry Interval (sent in whole seconds, rounded up): how long the broker keeps the session after a
    /// disconnect. `.zero`: the session ends with the connection.
    public var sessionExpiry: Duration
    public var will: Will?
    public var reconnect: Reconnect
    /// How long ``MQTTClient/connect()`` waits for the broker's CONNACK.
    public var connectTimeout: Duration
    /// How long ``MQTTClient/shutdown()`` waits for the client's thread before abandoning it. A third of it is the
    /// time the DISCONNECT has to go out before the thread ends, in ``MQTTClient/shutdown()`` and in the background
    /// teardown of a client released without it.
    public var shutdownTimeout: Duration
    /// Disable Nagle's algorithm (strongly recommended: with it on, each round trip can wait ~40 ms).
    public var tcpNoDelay: Bool
    /// MQTT 5 Receive Maximum: how many QoS 1/2 messages the broker may have in flight towards us.
    ///
    /// The default, 100, keeps the broker's list of unacknowledged messages for this client short: mosquitto
    /// searches it for every acknowledgement, and with 65,535 handing 10,000 retained handoffs to one
    /// subscriber took twice as long (measured with Benchmarks/Floor).
    public var receiveMaximum: Int32
    /// How many QoS 1/2 publishes of ours may be in flight at once (0: as many as the broker allows);
    /// libmosquitto queues the others. The default, 100, keeps libmosquitto's own list short for the same
    /// reason: with no limit, 10,000 publishes at once took twice as long to be acknowledged.
    public var maximumInflightMessages: UInt32

    public init(
        host: String = "127.0.0.1",
        port: Int = 1883,
        tls: TLS? = nil,
        username: String? = nil,
        password: String? = nil,
        clientID: String? = nil,
        keepAlive: Duration = .seconds(30),
        protocolVersion: MQTTProtocolVersion = .v5,
        cleanStart: Bool = true,
        sessionExpiry: Duration = .zero,
        will: Will? = nil,
        reconnect: Reconnect = Reconnect(),
        connectTimeout: Duration = .seconds(10),
        shutdownTimeout: Duration = .seconds(3),
        tcpNoDelay: Bool = true,
        receiveMaximum: Int32 = 100,
        maximumInflightMessages: UInt32 = 100
    ) {
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.password = password
        self.clientID = clientID
        self.keepAlive = keepAlive
        self.protocolVersion = protocolVersion
        self.cleanStart = cleanStart
        self.sessionExpiry = sessionExpiry
        self.will = will
        self.reconnect = reconnect
        self.connectTimeout = connectTimeout
        self.shutdownTimeout = shutdownTimeout
        self.tcpNoDelay = tcpNoDelay
        self.receiveMaximum = receiveMaximum
        self.maximumInflightMessages = maximumInflightMessages
    }

    /// A configuration from a broker URL: `mqtt://[user[:password]@]host[:port]` (default port 1883) or
    /// `mqtts://...` (TLS, default port 8883, system trust store unless ``tls`` is changed).
    /// Percent-escapes in the user and password are decoded.
    public init(url: String) throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw MQTTError(.invalidConfiguration, "'\(url)' is not a broker URL; expected mqtt://host:port or mqtts://host:port")
        }
        self.init()
        switch scheme {
        case "mqtt", "tcp": tls = nil
        case "mqtts", "ssl", "tls": tls = TLS()
        default:
            throw MQTTError(.invalidConfiguration, "Unsupported scheme '\(scheme)' in broker URL '\(url)'; use mqtt:// or mqtts://")
        }
        guard let host = components.host, !host.isEmpty else {
            throw MQTTError(.invalidConfiguration, "Broker URL '\(url)' has no host")
        }
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        self.port = components.port ?? (tls == nil ? 1883 : 8883)
        guard (1...65535).contains(port) else {
            throw MQTTError(.invalidConfiguration, "Broker URL '\(url)' has an invalid port \(port)")
        }
        self.username = components.user
        self.password = components.password
    }
}
