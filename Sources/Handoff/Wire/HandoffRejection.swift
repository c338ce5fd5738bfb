import struct Foundation.Data
import struct Foundation.Date

/// A handoff that a participant refused: which one, why, and what became of it.
public struct HandoffRejection: Sendable, Hashable, CustomStringConvertible {
    /// Why a handoff was refused. The raw values are the wire names, used in dead letters.
    public enum Reason: String, Sendable, Hashable, Codable, CaseIterable {
        /// The payload is not a well-formed envelope (no header line, bad JSON, a missing or wrong field).
        case malformed = "malformed"
        /// The payload ends before the `length` bytes of data the header announces.
        case truncated = "truncated"
        /// The header's `format` is not one this library reads.
        case unsupportedFormat = "unsupported-format"
        /// The data's SHA-256 does not match the header.
        case integrityFailure = "integrity-failure"
        /// The payload is larger than the reader accepts.
        case tooLarge = "too-large"
        /// The header's label is not the label of the location the payload was found at.
        case labelMismatch = "label-mismatch"
        /// The state was written at a version this reader cannot read (newer, or without a migration path).
        case unknownVersion = "unknown-version"
        /// The state's bytes could not be decoded (or their content type is not the reader's).
        case undecodableState = "undecodable-state"
        /// A migration step threw, or the chain of migrations did not produce the current state type.
        case migrationFailed = "migration-failed"
        /// The decoded state did not pass the reader's validation.
        case validationFailed = "validation-failed"
        /// The successor won it and decoded it, but its merge strategy threw: kept as received instead of merged.
        case mergeFailed = "merge-failed"
        /// A claim was in flight when the broker lost this participant's session: it cannot know whether
        /// another participant also merged the handoff, so it keeps it as a dead letter instead of losing it.
        case claimOutcomeUnknown = "claim-outcome-unknown"
        /// A keyed reader (docs/PROTOCOL.md §10) found no signature, or one that does not verify: the envelope may be
        /// forged or tampered with.
        case signatureInvalid = "signature-invalid"
        /// The data is encrypted with a key this reader holds, but does not decrypt (docs/PROTOCOL.md §10.4).
        case decryptionFailed = "decryption-failed"
        /// Signed or encrypted with a key this reader does not hold: left in place for a participant that does.
        case unknownKey = "unknown-key"
        /// A chunked handoff (docs/PROTOCOL.md §12) whose chunk is missing from the broker: the whole handoff is kept as a
        /// dead letter (its manifest), never merged in part.
        case chunkMissing = "chunk-missing"
    }

    /// What became of a rejected handoff.
    public enum Disposition: Sendable, Hashable {
        /// It was taken out of the waiting handoffs and stored as a dead letter, to be inspected.
        case deadLettered
        /// It was left waiting, untouched, for a participant that can read it.
        case leftInPlace
    }

    /// The label the handoff was waiting under.
    public var label: HandoffLabel
    /// The handoff's id as found; it may not be a valid ``HandoffID`` when the payload was malformed.
    public var id: String
    /// Why it was refused.
    public var reason: Reason
    /// What exactly was wrong, for people.
    public var detail: String
    /// What became of it.
    public var disposition: Disposition

    /// Creates a rejection.
    public init(label: HandoffLabel, id: String, reason: Reason, detail: String, disposition: Disposition) {
        self.label = label
        self.id = id
        self.reason = reason
        self.detail = detail
        self.disposition = disposition
    }

    /// The largest `handoff-dead-detail` of a dead letter, in bytes of UTF-8 (docs/PROTOCOL.md §7).
    package static let maximumDetailBytes = 1024

    /// `detail` cut to at most ``maximumDetailBytes`` bytes of UTF-8 at a Unicode scalar boundary, as a dead
    /// letter's `handoff-dead-detail` carries it (docs/PROTOCOL.md §7).
    package static func truncatedDetail(_ detail: String) -> String {
        guard detail.utf8.count > maximumDetailBytes else { return detail }
        var scalars = String.UnicodeScalarView()
        var bytes = 0
        for scalar in detail.unicodeScalars {
            bytes += UTF8.width(scalar)
            guard bytes <= maximumDetailBytes else { break }
            scalars.append(scalar)
        }
        return String(scalars)
    }

    /// For example `handoff 'counter'/<id> rejected (validation-failed): <detail>; moved to dead letters`.
    public var description: String {
        let outcome: String
        switch disposition {
        case .deadLettered: outcome = "moved to dead letters"
        case .leftInPlace: outcome = "left in place for a participant that can read it"
        }
        let shownID = id.isEmpty ? "<no id>" : HandoffError.quoted(id).dropFirst().dropLast()
        return "handoff '\(label)'/\(shownID) rejected (\(reason.rawValue)): \(detail); \(outcome)"
    }
}

/// A handoff that was taken out of the waiting handoffs because a participant could not accept it, kept so
/// that nothing is lost silently.
public struct DeadLetter: Sendable, Hashable {
    /// The label the handoff was waiting under.
    public var label: HandoffLabel
    /// The handoff's id as found (may not be a valid ``HandoffID``).
    public var id: String
    /// Why it was refused.
    public var reason: HandoffRejection.Reason
    /// What exactly was wrong.
    public var detail: String
    /// The instance name of the participant that refused it.
    public var rejectedBy: String
    /// When it was refused.
    public var rejectedAt: Date
    /// The original payload, verbatim.
    public var payload: Data

    /// Creates a dead letter.
    public init(
        label: HandoffLabel,
        id: String,
        reason: HandoffRejection.Reason,
        detail: String,
        rejectedBy: String,
        rejectedAt: Date,
        payload: Data
    ) {
        self.label = label
        self.id = id
        self.reason = reason
        self.detail = detail
        self.rejectedBy = rejectedBy
        self.rejectedAt = rejectedAt
        self.payload = payload
    }
}
