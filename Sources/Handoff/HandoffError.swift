/// The one error type of swift-handoff's API: what went wrong (``code``), a sentence for people (``description``: what
/// happened and what to do about it), the context it happened in, and the error underneath, if any.
///
/// Match on ``code``, which is extensible: new codes may be added in minor releases, so a `switch` over codes needs a
/// `default`.
///
/// ```swift
/// do {
///     try await channel.initiate(state)
/// } catch let error as HandoffError where error.code == .timeout {
///     // retry, or give up
/// }
/// ```
///
/// A payload that is not a readable envelope, and a state that cannot be decoded, migrated or validated, are
/// ``Code/unreadableEnvelope`` and ``Code/unreadableState``; their ``rejectionReason`` is the reason a dead letter or
/// rejection reports (docs/PROTOCOL.md §7).
public struct HandoffError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure an error is. New codes may be added: compare with `==`, and give a `switch` a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code's name, such as `timeout`.
        public let name: String

        private init(_ name: String) { self.name = name }

        public var description: String { name }

        /// The string cannot be a handoff label.
        public static let invalidLabel = Code("invalid-label")
        /// The string cannot be a handoff id (1–64 characters of `A–Z a–z 0–9 _ -`).
        public static let invalidID = Code("invalid-id")
        /// The string cannot be a topic prefix for a transport.
        public static let invalidPrefix = Code("invalid-prefix")
        /// A key or key file (``HandoffKeySet``) cannot be used.
        public static let invalidKey = Code("invalid-key")
        /// The operation needs the label to be watched (subscribed) first.
        public static let notSubscribed = Code("not-subscribed")
        /// The operation did not finish within its time limit.
        public static let timeout = Code("timeout")
        /// The state could not be encoded; nothing was published.
        public static let encodingFailed = Code("encoding-failed")
        /// The transport cannot reach its store (for MQTT: the broker).
        public static let transportUnavailable = Code("transport-unavailable")
        /// A claim was attempted but the transport cannot tell whether it won.
        public static let claimOutcomeUnknown = Code("claim-outcome-unknown")
        /// The transport or channel was shut down.
        public static let shutdown = Code("shutdown")
        /// The claim arbiter's store (docs/PROTOCOL.md §11) cannot be reached or refused the operation.
        public static let arbiterUnavailable = Code("arbiter-unavailable")
        /// Something that runs once was started a second time.
        public static let alreadyStarted = Code("already-started")
        /// Successors took the label's state over while this participant ran (``HandoffCheckpointing``).
        public static let fenced = Code("fenced")
        /// A payload is not a readable envelope; ``HandoffError/rejectionReason`` says why.
        public static let unreadableEnvelope = Code("unreadable-envelope")
        /// A state cannot be decoded, migrated or validated; ``HandoffError/rejectionReason`` says why.
        public static let unreadableState = Code("unreadable-state")
    }

    /// What kind of failure this is.
    public let code: Code
    /// What exactly is wrong (for an unreadable envelope or state: the dead letter's detail, without the reason).
    public let detail: String
    /// The label the failure concerns, when there is one.
    public let label: HandoffLabel?
    /// The handoff id the failure concerns, when there is one.
    public let handoffID: HandoffID?
    /// For ``Code/unreadableEnvelope`` and ``Code/unreadableState``: the reason a rejection or dead letter reports.
    public let rejectionReason: HandoffRejection.Reason?
    /// For ``Code/fenced``: who took the state over, and how.
    public let fencing: HandoffFencing?
    /// The error underneath (a codec's, the MQTT client's), when there is one. Not compared by `==`.
    public let underlying: (any Error)?
    /// A sentence saying what went wrong and what to do about it.
    public let description: String

    /// Creates an error. The factory functions (``timeout(operation:after:)`` and the others) fill in the sentence;
    /// this initializer is for codes they do not cover.
    public init(
        code: Code,
        description: String,
        detail: String = "",
        label: HandoffLabel? = nil,
        handoffID: HandoffID? = nil,
        rejectionReason: HandoffRejection.Reason? = nil,
        fencing: HandoffFencing? = nil,
        underlying: (any Error)? = nil
    ) {
        self.code = code
        self.description = description
        self.detail = detail
        self.label = label
        self.handoffID = handoffID
        self.rejectionReason = rejectionReason
        self.fencing = fencing
        self.underlying = underlying
    }

    public static func == (lhs: HandoffError, rhs: HandoffError) -> Bool {
        lhs.code == rhs.code && lhs.detail == rhs.detail && lhs.label == rhs.label && lhs.handoffID == rhs.handoffID
            && lhs.rejectionReason == rhs.rejectionReason && lhs.fencing == rhs.fencing && lhs.description == rhs.description
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(detail)
        hasher.combine(label)
        hasher.combine(handoffID)
        hasher.combine(rejectionReason)
    }
}

extension HandoffError {
    /// The string cannot be a handoff label; `reason` says which rule it breaks.
    public static func invalidLabel(_ label: String, reason: String) -> HandoffError {
        HandoffError(
            code: .invalidLabel,
            description: "invalid handoff label \(quoted(label)): \(reason); labels are 1–200 UTF-8 bytes without control characters",
            detail: reason
        )
    }

    /// The string cannot be a handoff id.
    public static func invalidID(_ id: String) -> HandoffError {
        HandoffError(
            code: .invalidID,
            description: "invalid handoff id \(quoted(id)): ids are 1–64 characters of A–Z a–z 0–9 _ -; use HandoffID.random()",
            detail: id
        )
    }

    /// The string cannot be a topic prefix for a transport; `reason` says which rule it breaks.
    public static func invalidPrefix(_ prefix: String, reason: String) -> HandoffError {
        HandoffError(code: .invalidPrefix, description: "invalid topic prefix \(quoted(prefix)): \(reason)", detail: reason)
    }

    /// A key or key file cannot be used; `detail` says why.
    public static func invalidKey(_ detail: String) -> HandoffError {
        HandoffError(code: .invalidKey, description: "invalid handoff key: \(detail)", detail: detail)
    }

    /// The operation needs `label` to be watched (subscribed) first.
    public static func notSubscribed(_ label: HandoffLabel) -> HandoffError {
        HandoffError(
            code: .notSubscribed,
            description: "handoff label '\(label)' is not subscribed: call subscribe() (watch) before this operation",
            label: label
        )
    }

    /// `operation` did not finish within `limit`.
    public static func timeout(operation: String, after limit: Duration) -> HandoffError {
        HandoffError(
            code: .timeout,
            description: "handoff operation '\(operation)' did not finish within \(limit): check that the transport is reachable, "
                + "or allow a longer timeout",
            detail: operation
        )
    }

    /// The state for `label` could not be encoded; nothing was published.
    public static func encodingFailed(label: HandoffLabel, detail: String, underlying: (any Error)? = nil) -> HandoffError {
        HandoffError(
            code: .encodingFailed,
            description: "the state for handoff label '\(label)' could not be encoded, nothing was published: \(detail)",
            detail: detail,
            label: label,
            underlying: underlying
        )
    }

    /// The transport cannot reach its store; `detail` says how.
    public static func transportUnavailable(_ detail: String, underlying: (any Error)? = nil) -> HandoffError {
        HandoffError(
            code: .transportUnavailable,
            description: "the handoff transport is unavailable: \(detail); check the connection and retry",
            detail: detail,
            underlying: underlying
        )
    }

    /// A claim of `label`/`id` was attempted but the transport cannot tell whether it won: the handoff may or may not
    /// be waiting still.
    public static func claimOutcomeUnknown(label: HandoffLabel, id: HandoffID, detail: String) -> HandoffError {
        HandoffError(
            code: .claimOutcomeUnknown,
            description: "claim of handoff '\(label)'/\(id) has an unknown outcome: \(detail); it was not merged, and if it "
                + "is still waiting, a later complete() tries it again",
            detail: detail,
            label: label,
            handoffID: id
        )
    }

    /// The transport or channel was shut down.
    public static let shutdown = HandoffError(
        code: .shutdown,
        description: "the handoff transport was shut down; create a new one to continue"
    )

    /// The claim arbiter's store cannot be reached or refused the operation: nothing was claimed or stored by it; the
    /// handoffs stay where they were.
    public static func arbiterUnavailable(_ detail: String, underlying: (any Error)? = nil) -> HandoffError {
        HandoffError(
            code: .arbiterUnavailable,
            description: "the claim arbiter is unavailable: \(detail); nothing was claimed, retry once it is back",
            detail: detail,
            underlying: underlying
        )
    }

    /// `what`, which runs once (such as `HandoffService.run()`), was started a second time: nothing was done.
    public static func alreadyStarted(_ what: String) -> HandoffError {
        HandoffError(
            code: .alreadyStarted,
            description: "\(what) was started already: it runs once; create a new one to run again",
            detail: what
        )
    }

    /// Successors took this label's state over while this participant ran: handing it off would have it merged twice.
    public static func fenced(_ fencing: HandoffFencing) -> HandoffError {
        HandoffError(
            code: .fenced,
            description: "not handing off '\(fencing.label)': successors own its state now (\(fencing.reason))",
            detail: fencing.reason,
            label: fencing.label,
            fencing: fencing
        )
    }

    /// A payload that is not a readable envelope, for `reason` (for example `malformed: missing field 'id'`).
    public static func unreadableEnvelope(_ reason: HandoffRejection.Reason, detail: String) -> HandoffError {
        HandoffError(code: .unreadableEnvelope, description: "\(reason.rawValue): \(detail)", detail: detail, rejectionReason: reason)
    }

    /// A state that cannot be taken over, for `reason` (for example `migration-failed: migration from version 1 to 2
    /// threw: …`).
    public static func unreadableState(_ reason: HandoffRejection.Reason, detail: String, underlying: (any Error)? = nil) -> HandoffError {
        HandoffError(
            code: .unreadableState,
            description: "\(reason.rawValue): \(detail)",
            detail: detail,
            rejectionReason: reason,
            underlying: underlying
        )
    }

    /// The reason a rejection or dead letter of this error reports: its ``rejectionReason``, or `malformed` for an
    /// error that has none (reading code throws only unreadable-envelope and unreadable-state errors).
    package var reason: HandoffRejection.Reason { rejectionReason ?? .malformed }

    /// Quotes a user-supplied string for a message, escaping control characters so the message stays one line.
    static func quoted(_ string: String) -> String {
        var out = "'"
        for scalar in string.unicodeScalars.prefix(240) {
            if scalar.properties.generalCategory == .control {
                out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        if string.unicodeScalars.count > 240 { out += "…" }
        return out + "'"
    }
}
