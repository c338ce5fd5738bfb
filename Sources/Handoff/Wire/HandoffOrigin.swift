import Foundation

/// Who initiated a handoff: the participant's instance name, and where it ran.
///
/// `instance` is what the transports compare to keep a process from claiming its own handoffs: give every
/// running process its own (the default is a random UUID).
public struct HandoffOrigin: Hashable, Sendable, Codable {
    /// The participant's instance name, unique per running process.
    public var instance: String
    /// The host name it ran on, if known.
    public var host: String?
    /// Its process id, if known.
    public var pid: Int32?

    /// Creates an origin.
    public init(instance: String, host: String? = nil, pid: Int32? = nil) {
        self.instance = instance
        self.host = host
        self.pid = pid
    }

    /// This process: `instance` (a new random UUID by default), the host name and the process id.
    public static func current(instance: String = UUID().uuidString.lowercased()) -> HandoffOrigin {
        HandoffOrigin(instance: instance, host: ProcessInfo.processInfo.hostName, pid: getpid())
    }
}
