import Handoff

/// The topic layout of the MQTT handoff protocol (docs/PROTOCOL.md, "Topics").
///
/// ```
/// {prefix}/handoffs/{label}/{id}       one retained message per waiting handoff
/// {prefix}/dead-letters/{label}/{id}   one retained message per rejected handoff
/// {prefix}/checkpoints/{label}/{id}    reserved for Will-backed checkpoints
/// {prefix}/sync/{instance}             a participant's own ordering markers (not retained)
/// ```
/// `{label}` is ``HandoffLabel/topicLevel`` (percent-encoded), `{id}` the handoff id verbatim.
public struct HandoffTopics: Sendable, Hashable {
    /// The validated prefix, e.g. `handoff` or `plant-7/handoff`.
    public let prefix: String

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
    }

    public func handoff(_ label: HandoffLabel, id: String) -> String { "\(prefix)/handoffs/\(label.topicLevel)/\(id)" }
    public func handoffFilter(_ label: HandoffLabel) -> String { "\(prefix)/handoffs/\(label.topicLevel)/+" }
    public func deadLetter(_ label: HandoffLabel, id: String) -> String { "\(prefix)/dead-letters/\(label.topicLevel)/\(id)" }
    public func deadLetterFilter(_ label: HandoffLabel) -> String { "\(prefix)/dead-letters/\(label.topicLevel)/+" }
    public func sync(instance: String) -> String { "\(prefix)/sync/\(instance)" }

    /// Splits a handoff topic into its label level and id level; `nil` for any other topic.
    func parseHandoff(_ topic: String) -> (labelLevel: Substring, id: Substring)? {
        let handoffsPrefix = "\(prefix)/handoffs/"
        guard topic.hasPrefix(handoffsPrefix) else { return nil }
        let rest = topic.dropFirst(handoffsPrefix.count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let id = rest[rest.index(after: slash)...]
        guard !id.isEmpty, !id.contains("/") else { return nil }
        return (rest[..<slash], id)
    }
}

/// The MQTT 5 user property names of the protocol.
enum HandoffProperty {
    /// On a claim (a zero-length retained publish): the instance that claims.
    static let claimBy = "handoff-claim-by"
    /// On a claim: why it claims: `merge`, `dead-letter` or `already-merged`.
    static let claimPurpose = "handoff-claim-purpose"
    /// On a dead letter: the reason code, a human-readable detail, who rejected it, when, and from where.
    static let deadReason = "handoff-dead-reason"
    static let deadDetail = "handoff-dead-detail"
    static let deadBy = "handoff-dead-by"
    static let deadAt = "handoff-dead-at"
    static let deadTopic = "handoff-dead-topic"
    /// On a sync marker: its nonce.
    static let syncNonce = "handoff-sync"
}
