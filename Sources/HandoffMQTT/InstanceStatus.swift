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
struct InstanceStatus: Sendable, Hashable, Codable {
    enum State: String, Sendable, Codable {
        /// The instance is connected (a birth).
        case online
        /// The connection of `incarnation` died without a DISCONNECT (a Will), or the instance was declared dead.
        case dead
    }

    static let currentFormat = "swift-handoff-instance/1"

    var format = Self.currentFormat
    var instance: String
    /// The connection number (≥ 1) the status is about.
    var incarnation: Int
    var state: State
    /// Checkpoints of this instance written at an incarnation up to this one are released (0: none).
    var released: Int

    /// The birth of connection `incarnation`.
    static func online(_ instance: String, incarnation: Int, released: Int) -> InstanceStatus {
        InstanceStatus(instance: instance, incarnation: incarnation, state: .online, released: released)
    }

    /// The Will of connection `incarnation`: it releases every checkpoint written up to that connection.
    static func dead(_ instance: String, incarnation: Int) -> InstanceStatus {
        InstanceStatus(instance: instance, incarnation: incarnation, state: .dead, released: incarnation)
    }

    /// Compact JSON, keys sorted.
    func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings and integers cannot fail.
        return (try? encoder.encode(self)) ?? Data()
    }

    /// Reads a status; `nil` for anything that is not one of this format (other formats are ignored, not refused).
    static func decode(_ payload: Data) -> InstanceStatus? {
        guard let status = try? JSONDecoder().decode(InstanceStatus.self, from: payload),
            status.format == currentFormat, status.incarnation >= 1, status.released >= 0
        else { return nil }
        return status
    }

    /// What successors may release: a dead status releases at least its own incarnation.
    var releasedThrough: Int {
        state == .dead ? max(released, incarnation) : released
    }
}
