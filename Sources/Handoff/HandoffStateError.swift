/// Why a handoff's state cannot be taken over: it could not be decoded, migrated, or read at its version.
public struct HandoffStateError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `unknownVersion`, `undecodableState`, `migrationFailed` or `validationFailed`.
    public var reason: HandoffRejection.Reason
    /// What exactly is wrong.
    public var detail: String

    /// Creates a state error.
    public init(reason: HandoffRejection.Reason, detail: String) {
        self.reason = reason
        self.detail = detail
    }

    /// For example `migration-failed: migration from version 1 to 2 threw: …`.
    public var description: String { "\(reason.rawValue): \(detail)" }
}
