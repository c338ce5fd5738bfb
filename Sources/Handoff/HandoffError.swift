/// An error of the handoff API. Its description says what happened and what to do about it.
public enum HandoffError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The string cannot be a handoff label; `reason` says which rule it breaks.
    case invalidLabel(String, reason: String)
    /// The string cannot be a handoff id (1–64 characters of `A–Z a–z 0–9 _ -`).
    case invalidID(String)
    /// The string cannot be a topic prefix for a transport; `reason` says which rule it breaks.
    case invalidPrefix(String, reason: String)
    /// The operation needs the label to be watched (subscribed) first.
    case notSubscribed(HandoffLabel)
    /// The operation did not finish within its time budget.
    case timeout(operation: String, after: Duration)
    /// The state could not be encoded; nothing was published.
    case encodingFailed(label: HandoffLabel, detail: String)
    /// The transport cannot reach its store (for MQTT: the broker).
    case transportUnavailable(String)
    /// A claim was attempted but the transport cannot tell whether it won; the handoff may or may not be
    /// waiting still.
    case claimOutcomeUnknown(label: HandoffLabel, id: HandoffID, detail: String)
    /// The transport or channel was shut down.
    case shutdown
    /// The claim arbiter's store (docs/PROTOCOL.md §11) cannot be reached or refused the operation: nothing was claimed
    /// or stored by it; the handoffs stay where they were.
    case arbiterUnavailable(String)
    /// Something that runs once was started a second time (such as `HandoffService.run()`): nothing was done.
    case alreadyStarted(String)
    /// Successors took this label's state over while this participant ran (``HandoffCheckpointing``): handing it
    /// off would have it merged twice.
    case fenced(HandoffFencing)

    /// A sentence saying what went wrong and what to do about it.
    public var description: String {
        switch self {
        case .invalidLabel(let label, let reason):
            return "invalid handoff label \(Self.quoted(label)): \(reason); labels are 1–200 UTF-8 bytes without "
                + "control characters"
        case .invalidID(let id):
            return "invalid handoff id \(Self.quoted(id)): ids are 1–64 characters of A–Z a–z 0–9 _ -; "
                + "use HandoffID.random()"
        case .invalidPrefix(let prefix, let reason):
            return "invalid topic prefix \(Self.quoted(prefix)): \(reason)"
        case .notSubscribed(let label):
            return "handoff label '\(label)' is not subscribed: call subscribe() (watch) before this operation"
        case .timeout(let operation, let after):
            return "handoff operation '\(operation)' did not finish within \(after): check that the transport is "
                + "reachable, or allow a longer timeout"
        case .encodingFailed(let label, let detail):
            return "the state for handoff label '\(label)' could not be encoded, nothing was published: \(detail)"
        case .transportUnavailable(let detail):
            return "the handoff transport is unavailable: \(detail); check the connection and retry"
        case .claimOutcomeUnknown(let label, let id, let detail):
            return "claim of handoff '\(label)'/\(id) has an unknown outcome: \(detail); it was not merged, and "
                + "if it is still waiting, a later complete() tries it again"
        case .shutdown:
            return "the handoff transport was shut down; create a new one to continue"
        case .arbiterUnavailable(let detail):
            return "the claim arbiter is unavailable: \(detail); nothing was claimed, retry once it is back"
        case .alreadyStarted(let what):
            return "\(what) was started already: it runs once; create a new one to run again"
        case .fenced(let fencing):
            return "not handing off '\(fencing.label)': successors own its state now (\(fencing.reason))"
        }
    }

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
