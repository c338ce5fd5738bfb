/// An error of the test kit. Its description says what happened and what to do about it.
public struct MosquittoTestKitError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Code: Sendable, Hashable {
        /// A program the kit needs (`mosquitto`, `openssl`, …) is not installed; the message says how to install it.
        case executableNotFound
        /// The broker configuration folder or one of its files is missing or not usable.
        case invalidConfiguration
        /// An external command (such as `openssl`) failed; the message holds its output.
        case commandFailed
        /// mosquitto exited or did not accept connections in time; the message holds the tail of its log.
        case brokerDidNotStart
        /// The broker was already shut down by ``withMosquittoBroker(configDirectory:isolation:_:)`` and its
        /// private directory removed.
        case brokerRemoved
    }

    /// What kind of failure this is.
    public let code: Code
    /// What happened and what to do about it.
    public let message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
