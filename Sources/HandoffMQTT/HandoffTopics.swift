import Handoff

/// The topic layout of the MQTT handoff protocol (docs/PROTOCOL.md, "Topics").
///
/// ```
/// {prefix}/handoffs/{label}/{id}       one retained message per waiting handoff
/// {prefix}/dead-letters/{label}/{id}   one retained message per rejected handoff
/// {prefix}/checkpoints/{label}/{instance}  one retained checkpoint per live (or dead, unclaimed) instance
/// {prefix}/instances/{instance}        one retained status per instance: its birth, or its Will
/// {prefix}/sync/{instance}             a participant's own ordering markers (not retained)
/// ```
/// `{label}` is ``HandoffLabel/topicLevel`` (percent-encoded), `{id}` the handoff id verbatim.
public struct HandoffTopics: Sendable, Hashable {
    /// The validated prefix, e.g. `handoff` or `plant-7/handoff`.
    public let prefix: String
    /// `{prefix}/handoffs/`, the start of every handoff topic.
    private let handoffsPrefix: String

    /// Validates `prefix`: one or more non-empty topic levels, no wildcards (`+`, `#`), no NUL, not
    /// starting with `$` (reserved for broker topics), at most 256 UTF-8 bytes.
    public init(prefix: String) throws(HandoffError) {
        func refuse(_ reason: String) -> HandoffError { .invalidPrefix(prefix, reason: reason) }
        guard !prefix.isEmpty else { throw refuse("it is empty") }
        guard prefix.utf8.count <= 256 else { throw refuse("it is longer than 256 bytes") }
        guard !prefix.hasPrefix("$") else { throw refuse("topics starting with '$' are reserved for the broker") }
        guard !prefix.contains(where: { $0 == "+" || $0 == "#" || $0 == "\u{0}" }) else {
            throw refuse("it contains a wildcard ('+' or '#') or NUL")
        }
        guard !prefix.split(separator: "/", omittingEmptySubsequences: false).contains(where: \.isEmpty) else {
            throw refuse("it has an empty topic level (a leading, trailing or double '/')")
        }
        self.prefix = prefix
        self.handoffsPrefix = "\(prefix)/handoffs/"
    }

    public func handoff(_ label: HandoffLabel, id: String) -> String { "\(prefix)/handoffs/\(label.topicLevel)/\(id)" }
    public func handoffFilter(_ label: HandoffLabel) -> String { "\(prefix)/handoffs/\(label.topicLevel)/+" }
    public func deadLetter(_ label: HandoffLabel, id: String) -> String { "\(prefix)/dead-letters/\(label.topicLevel)/\(id)" }
    public func deadLetterFilter(_ label: HandoffLabel) -> String { "\(prefix)/dead-letters/\(label.topicLevel)/+" }
    public func sync(instance: String) -> String { "\(prefix)/sync/\(instance)" }
    public func checkpoint(_ label: HandoffLabel, instance: String) -> String { "\(prefix)/checkpoints/\(label.topicLevel)/\(instance)" }
    public func checkpointFilter(_ label: HandoffLabel) -> String { "\(prefix)/checkpoints/\(label.topicLevel)/+" }
    /// Every label's handoffs: the one subscription of a transport (docs/PROTOCOL.md §6).
    public var handoffsWildcard: String { "\(prefix)/handoffs/+/+" }
    /// Every label's checkpoints (§9).
    public var checkpointsWildcard: String { "\(prefix)/checkpoints/+/+" }
    public func instance(_ instance: String) -> String { "\(prefix)/instances/\(instance)" }
    public var instanceFilter: String { "\(prefix)/instances/+" }

    /// Splits a checkpoint topic into its label level and instance level; `nil` for any other topic.
    package func parseCheckpoint(_ topic: String) -> (labelLevel: Substring, instance: Substring)? {
        Self.split(topic, after: "\(prefix)/checkpoints/")
    }

    /// The instance level of a status topic; `nil` for any other topic.
    package func parseInstance(_ topic: String) -> Substring? {
        let start = "\(prefix)/instances/"
        guard topic.hasPrefix(start) else { return nil }
        let instance = topic.dropFirst(start.count)
        guard !instance.isEmpty, !instance.utf8.contains(UInt8(ascii: "/")) else { return nil }
        return instance
    }

    private static func split(_ topic: String, after start: String) -> (Substring, Substring)? {
        guard topic.hasPrefix(start) else { return nil }
        let rest = topic.dropFirst(start.count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let last = rest[rest.index(after: slash)...]
        guard !last.isEmpty, !last.utf8.contains(UInt8(ascii: "/")) else { return nil }
        return (rest[..<slash], last)
    }

    /// Splits a handoff topic into its label level and id level; `nil` for any other topic.
    package func parseHandoff(_ topic: String) -> (labelLevel: Substring, id: Substring)? {
        Self.split(topic, after: handoffsPrefix)
    }
}

/// The MQTT 5 user property names of the protocol.
package enum HandoffProperty {
    /// On a claim (a zero-length retained publish): the instance that claims.
    package static let claimBy = "handoff-claim-by"
    /// On a claim: why it claims: `merge`, `dead-letter` or `already-merged`.
    package static let claimPurpose = "handoff-claim-purpose"
    /// On a claim of a keyed participant: `hmac-sha256:KEYID:MAC` (docs/PROTOCOL.md §10.5).
    package static let claimSignature = "handoff-claim-signature"
    /// On a restore: the instance that published the waiting handoff again after a clear that was not a claim (§10.6).
    package static let restoreBy = "handoff-restore-by"
    /// On a dead letter: the reason code, a human-readable detail, who rejected it, when, and from where.
    package static let deadReason = "handoff-dead-reason"
    package static let deadDetail = "handoff-dead-detail"
    package static let deadBy = "handoff-dead-by"
    package static let deadAt = "handoff-dead-at"
    package static let deadTopic = "handoff-dead-topic"
    /// The MQTT 5 content type of handoff messages (informative, docs/PROTOCOL.md §4).
    package static let contentType = "application/vnd.swift-handoff"
    /// On a sync marker: its nonce.
    package static let syncNonce = "handoff-sync"
}
