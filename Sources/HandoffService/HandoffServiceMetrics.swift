import Handoff
import Metrics

/// The metrics of a ``HandoffService``, created once per service. Labels are never dimensions (thousands of
/// participants would make thousands of series); `reason` is the only dimension.
///
/// | metric | type | what |
/// |---|---|---|
/// | `handoff_initiated_total` | counter | handoffs acknowledged at shutdown |
/// | `handoff_initiate_failed_total{reason}` | counter | handoffs not acknowledged at shutdown; `reason` is a ``HandoffShutdownOutcome/Kind`` raw value |
/// | `handoff_claimed_total` | counter | handoffs claimed and merged |
/// | `handoff_rejected_total{reason}` | counter | handoffs dead-lettered or left for another reader; `reason` is a rejection reason code (`merge-failed`: the merge strategy threw) |
/// | `handoff_initiate_duration` | timer | from the shutdown signal to one handoff's acknowledgement |
/// | `handoff_merge_duration` | timer | one complete-and-merge step of one participant |
/// | `handoff_checkpoints_total{outcome}` | counter | checkpoints of participants: `written`, `unchanged`, `fenced` or `failed` |
/// | `handoff_checkpoint_round_duration` | timer | one checkpoint round over every participant |
/// | `handoff_fenced_total` | counter | participants whose state successors took over while they ran |
struct HandoffServiceMetrics: Sendable {
    /// The rejection reason used when a merge strategy throws.

    let initiated: Counter
    let claimed: Counter
    let initiateFailed: [HandoffShutdownOutcome.Kind: Counter]
    let rejected: [String: Counter]
    let initiateDuration: Metrics.Timer
    let mergeDuration: Metrics.Timer
    let checkpoints: [String: Counter]
    let checkpointRoundDuration: Metrics.Timer
    let fenced: Counter
    static let checkpointFailed = "failed"

    init(factory: (any MetricsFactory)?) {
        let factory = factory ?? MetricsSystem.factory
        initiated = Counter(label: "handoff_initiated_total", factory: factory)
        claimed = Counter(label: "handoff_claimed_total", factory: factory)
        var failed: [HandoffShutdownOutcome.Kind: Counter] = [:]
        for kind in HandoffShutdownOutcome.Kind.allCases where kind != .handedOff {
            failed[kind] = Counter(
                label: "handoff_initiate_failed_total",
                dimensions: [("reason", kind.rawValue)],
                factory: factory
            )
        }
        initiateFailed = failed
        var rejected: [String: Counter] = [:]
        for reason in HandoffRejection.Reason.allCases.map(\.rawValue) {
            rejected[reason] = Counter(label: "handoff_rejected_total", dimensions: [("reason", reason)], factory: factory)
        }
        self.rejected = rejected
        initiateDuration = Metrics.Timer(label: "handoff_initiate_duration", factory: factory)
        mergeDuration = Metrics.Timer(label: "handoff_merge_duration", factory: factory)
        var checkpoints: [String: Counter] = [:]
        for outcome in HandoffCheckpointOutcome.allCases.map(\.rawValue) + [Self.checkpointFailed] {
            checkpoints[outcome] = Counter(label: "handoff_checkpoints_total", dimensions: [("outcome", outcome)], factory: factory)
        }
        self.checkpoints = checkpoints
        checkpointRoundDuration = Metrics.Timer(label: "handoff_checkpoint_round_duration", factory: factory)
        fenced = Counter(label: "handoff_fenced_total", factory: factory)
    }

    func countRejected(_ reason: String) {
        rejected[reason]?.increment()
    }

    func record(_ outcome: HandoffShutdownOutcome) {
        if outcome.kind == .handedOff {
            initiated.increment()
            initiateDuration.recordNanoseconds(outcome.duration.nanoseconds)
        } else {
            initiateFailed[outcome.kind]?.increment()
        }
    }
}

extension Duration {
    /// The duration in whole nanoseconds (saturating).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : scaled + attoseconds / 1_000_000_000
    }
}
