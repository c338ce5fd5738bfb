import Foundation

/// The retained status of one participant instance on `{prefix}/instances/{instance}` (docs/PROTOCOL.md §9): its
/// birth after every connect, or its Will (published by the broker when the connection died without a DISCONNECT).
///
/// ```
/// {"format":"swift-handoff-instance/1","incarnation":3,"instance":"…","released":2,"state":"online"}
/// ```
///
/// `released` is what successors act on: the instance's checkpoints written at an incarnation up to `released` are
/// released to them (its owner is dead, or was declared dead and has been fenced). A Will releases its own
/// incarnation; a birth repeats what earlier Wills released, so that a successor that starts later still knows.
package struct InstanceStatus: Sendable, Hashable, Codable {
    package enum State: String, Sendable, Codable {
        /// The instance is connected (a birth).
        case online
        /// The connection of `incarnation` died without a DISCONNECT (a Will), or the instance was declared dead.
        case dead
    }

    package static let currentFormat = "swift-handoff-instance/1"

    package var format = Self.currentFormat
    package var instance: String
    /// The connection number (≥ 1) the status is about.
    package var incarnation: Int
    package var state: State
    /// Checkpoints of this instance written at an incarnation up to this one are released (0: none).
    package var released: Int

    /// The birth of connection `incarnation`.
    package static func online(_ instance: String, incarnation: Int, released: Int) -> InstanceStatus {
        InstanceStatus(instance: instance, incarnation: incarnation, state: .online, released: released)
    }

    /// The Will of connection `incarnation`: it releases every checkpoint written up to that connection.
    package static func dead(_ instance: String, incarnation: Int) -> InstanceStatus {
        InstanceStatus(instance: instance, incarnation: incarnation, state: .dead, released: incarnation)
    }

    /// Compact JSON, keys sorted.
    package func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings and integers cannot fail.
        return (try? encoder.encode(self)) ?? Data()
    }

    /// Reads a status; `nil` for anything that is not one of this format (other formats are ignored, not refused).
    package static func decode(_ payload: Data) -> InstanceStatus? {
        guard let status = try? JSONDecoder().decode(InstanceStatus.self, from: payload),
            status.format == currentFormat, status.incarnation >= 1, status.released >= 0
        else { return nil }
        return status
    }

    /// Reads the status published on the status topic of `instance`; `nil` if it is not one, or names another instance.
    package static func decode(_ payload: Data, on instance: some StringProtocol) -> InstanceStatus? {
        guard let status = decode(payload), status.instance == instance else { return nil }
        return status
    }

    /// What successors may release: a dead status releases at least its own incarnation.
    package var releasedThrough: Int {
        state == .dead ? max(released, incarnation) : released
    }
}
