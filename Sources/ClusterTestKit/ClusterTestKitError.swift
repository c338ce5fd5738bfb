/// An error of the cluster test kit. Its description says what happened and what to do about it; failures of a node
/// hold the tail of its logs.
public struct ClusterTestKitError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Code: Sendable, Hashable {
        /// ejabberd or Erlang is not installed; the message says how to install it.
        case executableNotFound
        /// The private epmd or an ejabberd node exited or was not ready in time.
        case nodeDidNotStart
        /// A node did not join the cluster, or the cluster did not list every node in time.
        case clusterDidNotForm
        /// An `ejabberd_ctl` command failed or timed out; the message holds its output.
        case commandFailed
        /// The cluster was stopped and its folder removed.
        case clusterStopped
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
