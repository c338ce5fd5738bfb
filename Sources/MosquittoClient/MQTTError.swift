/// An error of the MQTT client. Its description says what happened and what to do about it.
public struct MQTTError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is; switch over it to react programmatically.
    public enum Code: Sendable, Hashable {
        /// No TCP connection could be made to the broker (refused, unreachable, DNS failure).
        case brokerUnreachable
        /// The broker answered CONNECT with a refusal other than bad credentials.
        case connectionRefused
        /// The broker refused the username/password (or the client is not authorised to connect).
        case badCredentials
        /// The TLS handshake or TLS configuration failed.
        case tlsFailure
        /// The broker refused a publish (MQTT 5 reason code in `reasonCode`), typically an ACL denial.
        case publishRefused
        /// The broker refused a subscription (MQTT 5 reason code in `reasonCode`).
        case subscriptionRefused
        /// The operation did not complete in time.
        case timeout
        /// The payload exceeds what the broker or MQTT accepts.
        case payloadTooLarge
        /// The topic or filter is not valid for this operation.
        case invalidTopic
        /// The client configuration is not usable.
        case invalidConfiguration
        /// The connection was lost.
        case connectionLost
        /// The operation needs a connection and there is none.
        case notConnected
        /// The client was shut down; pending operations are failed with this.
        case shutdown
        /// A protocol error or an unexpected libmosquitto failure.
        case protocolError
    }

    /// The kind of failure.
    public var code: Code
    /// A sentence for a human: what happened and, where known, what to do.
    public var message: String
    /// The MQTT reason code the broker sent, if any.
    public var reasonCode: Int?

    public init(_ code: Code, _ message: String, reasonCode: Int? = nil) {
        self.code = code
        self.message = message
        self.reasonCode = reasonCode
    }

    public var description: String {
        if let reasonCode {
            return "\(message) (MQTT reason code 0x\(String(reasonCode, radix: 16, uppercase: true)))"
        }
        return message
    }
}
