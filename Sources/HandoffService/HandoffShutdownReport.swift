import Foundation
import Handoff

/// What happened to one participant's state at shutdown.
public struct HandoffShutdownOutcome: Sendable, Hashable, CustomStringConvertible {
    /// The kinds of outcome. Every kind but ``handedOff`` is logged at error level and counted in
    /// `handoff_initiate_failed_total` with the kind's raw value as its `reason`.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The transport acknowledged the handoff (for MQTT: the broker's PUBACK): it waits for a successor.
        case handedOff = "handed-off"
        /// The budget ran out before the acknowledgement while the transport was connected. The handoff may still
        /// arrive (libmosquitto keeps the publish queued until the connection closes) or may be lost; the
        /// envelope is in ``fallbackFile`` when a fallback directory is configured.
        case budgetExceeded = "budget-exceeded"
        /// The budget ran out while the transport could not reach its store (the broker was unreachable). The
        /// handoff was not stored; the envelope is in ``fallbackFile`` when a fallback directory is configured.
        case brokerUnreachable = "broker-unreachable"
        /// The transport refused the handoff (for example it was shut down, or the broker refused the publish).
        /// The envelope is in ``fallbackFile`` when a fallback directory is configured.
        case transportFailed = "transport-failed"
        /// The state could not be encoded; nothing was published and there is no envelope to keep.
        case encodingFailed = "encoding-failed"
        /// Successors had taken this participant's state over while it ran (its checkpoint was released, see
        /// ``HandoffParticipant/handoffOwnershipLost(_:)``): nothing was handed off, so that nothing is merged
        /// twice. Not a state at risk: it is not among ``HandoffShutdownReport/failures``.
        case fenced
    }

    /// The participant's label.
    public var label: HandoffLabel
    /// What happened.
    public var kind: Kind
    /// The handoff's id; `nil` when the state could not be encoded.
    public var handoffID: HandoffID?
    /// The size of the encoded state (the envelope's data, without its header) in bytes; `nil` when the state could
    /// not be encoded.
    public var bytes: Int?
    /// From the start of the shutdown to the acknowledgement or the failure.
    public var duration: Duration
    /// What went wrong, for every kind but ``Kind/handedOff``.
    public var detail: String?
    /// Where the envelope was written for an operator when the handoff was not acknowledged and a fallback
    /// directory is configured (see ``HandoffFallbackStore``).
    public var fallbackFile: String?

    /// Creates an outcome.
    public init(
        label: HandoffLabel,
        kind: Kind,
        handoffID: HandoffID? = nil,
        bytes: Int? = nil,
        duration: Duration,
        detail: String? = nil,
        fallbackFile: String? = nil
    ) {
        self.label = label
        self.kind = kind
        self.handoffID = handoffID
        self.bytes = bytes
        self.duration = duration
        self.detail = detail
        self.fallbackFile = fallbackFile
    }

    /// Whether the handoff was acknowledged.
    public var isHandedOff: Bool { kind == .handedOff }

    /// One line: label, kind, id, size, duration, detail and fallback file.
    public var description: String {
        var text = "'\(label)': \(kind.rawValue)"
        if let handoffID { text += " id=\(handoffID)" }
        if let bytes { text += " bytes=\(bytes)" }
        text += " after \(duration)"
        if let detail { text += ": \(detail)" }
        if let fallbackFile { text += " (envelope saved to \(fallbackFile))" }
        return text
    }
}

/// What one graceful shutdown of a ``HandoffService`` did, participant by participant.
public struct HandoffShutdownReport: Sendable, Hashable {
    /// When the shutdown started (wall clock), to relate the outcomes' durations to other events.
    public var startedAt: Date
    /// One outcome per hosted participant, in the order the participants were given.
    public var outcomes: [HandoffShutdownOutcome]
    /// From the start of the shutdown (the graceful shutdown signal) until every outcome was known or the budget
    /// ran out.
    public var duration: Duration
    /// The budget the shutdown had.
    public var budget: Duration

    /// Creates a report.
    public init(startedAt: Date, outcomes: [HandoffShutdownOutcome], duration: Duration, budget: Duration) {
        self.startedAt = startedAt
        self.outcomes = outcomes
        self.duration = duration
        self.budget = budget
    }

    /// The outcomes whose handoff was acknowledged.
    public var handedOff: [HandoffShutdownOutcome] { outcomes.filter(\.isHandedOff) }
    /// The outcomes whose handoff was not acknowledged: each is a state at risk.
    public var failures: [HandoffShutdownOutcome] { outcomes.filter { !$0.isHandedOff && $0.kind != .fenced } }
    /// The outcome for `label`, if it was hosted.
    public func outcome(for label: HandoffLabel) -> HandoffShutdownOutcome? {
        outcomes.first { $0.label == label }
    }
}
