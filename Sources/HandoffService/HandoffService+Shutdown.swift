import Foundation
import Handoff
import Logging

/// The shutdown half of ``HandoffService``: every participant is handed off concurrently, each outcome is
/// classified, logged, counted and, when it is a loss at risk, its envelope kept in the fallback directory.
extension HandoffService {
    /// Hands every participant off concurrently and waits for the outcomes until the budget's deadline.
    func handOffAll() async -> HandoffShutdownReport {
        let clock = ContinuousClock()
        let start = clock.now
        let startedAt = Date()
        let budget = configuration.shutdownBudget
        let deadline = start + budget
        let collector = OutcomeCollector(count: drivers.count)
        for (index, driver) in drivers.enumerated() {
            Task { await self.handOff(driver, index: index, collector: collector, start: start, deadline: deadline) }
        }
        await collector.wait(until: deadline)
        let entries = collector.close()
        var outcomes: [HandoffShutdownOutcome] = []
        outcomes.reserveCapacity(entries.count)
        for (index, entry) in entries.enumerated() {
            var outcome = entry.outcome ?? unfinishedOutcome(drivers[index].label, entry.envelope, elapsed: start.duration(to: clock.now))
            if !outcome.isHandedOff, let envelope = entry.envelope {
                outcome.fallbackFile = saveFallback(envelope)
            }
            metrics.record(outcome)
            log(outcome)
            outcomes.append(outcome)
        }
        let report = HandoffShutdownReport(
            startedAt: startedAt,
            outcomes: outcomes,
            duration: start.duration(to: clock.now),
            budget: budget
        )
        let failures = report.failures.count
        let summary: Logger.Metadata = [
            "handoff.handed_off": "\(outcomes.count - failures)", "handoff.failed": "\(failures)",
            "handoff.duration": "\(report.duration)", "handoff.budget": "\(budget)",
        ]
        if failures == 0 {
            logger.info("handoff service stopped: every state was handed off", metadata: summary)
        } else {
            logger.error("handoff service stopped: some states were NOT handed off (see the errors above)", metadata: summary)
        }
        return report
    }

    /// Snapshots, encodes and initiates one participant's handoff, and records the outcome.
    private func handOff(
        _ driver: any ParticipantDriver,
        index: Int,
        collector: OutcomeCollector,
        start: ContinuousClock.Instant,
        deadline: ContinuousClock.Instant
    ) async {
        let clock = ContinuousClock()
        let checkpoints = configuration.checkpointInterval == nil ? nil : checkpointTransport
        if let checkpoints, checkpoints.isFenced(driver.label) {
            collector.finish(
                index,
                HandoffShutdownOutcome(
                    label: driver.label,
                    kind: .fenced,
                    duration: start.duration(to: clock.now),
                    detail: "successors took this state over while the process ran (its checkpoint was released); "
                        + "nothing was handed off, so that nothing is merged twice"
                )
            )
            return
        }
        let envelope: HandoffEnvelope
        do {
            envelope = try await driver.makeEnvelope(forHandoff: true)
        } catch {
            let detail: String
            detail = error.code == .encodingFailed ? error.detail : "\(error)"
            collector.finish(
                index,
                HandoffShutdownOutcome(
                    label: driver.label,
                    kind: .encodingFailed,
                    duration: start.duration(to: clock.now),
                    detail: "the state could not be encoded, nothing was published: \(detail)"
                )
            )
            return
        }
        collector.prepared(index, envelope)
        let remaining = clock.now.duration(to: deadline)
        guard remaining > .zero else { return }  // the deadline classifies it
        let bytes = envelope.data.count
        do {
            try await transport.initiate(envelope, timeout: remaining)
            if let checkpoints {
                // The handoff replaces the checkpoint: remove it so that no successor merges both (successors also
                // clear a checkpoint whose owner's handoff they saw).
                do {
                    try await checkpoints.removeCheckpoint(driver.label, timeout: max(clock.now.duration(to: deadline), .milliseconds(100)))
                } catch {
                    logger.warning(
                        "the checkpoint replaced by the handoff could not be removed; successors clear it",
                        metadata: ["handoff.label": "\(driver.label)", "handoff.error": "\(error)"]
                    )
                }
            }
            collector.finish(
                index,
                HandoffShutdownOutcome(
                    label: driver.label,
                    kind: .handedOff,
                    handoffID: envelope.id,
                    bytes: bytes,
                    duration: start.duration(to: clock.now)
                )
            )
        } catch {
            var outcome = failedOutcome(driver.label, envelope, error: error, elapsed: start.duration(to: clock.now))
            outcome.bytes = bytes
            collector.finish(index, outcome)
        }
    }

    /// The outcome of an initiate that threw.
    private func failedOutcome(
        _ label: HandoffLabel,
        _ envelope: HandoffEnvelope,
        error: any Error,
        elapsed: Duration
    ) -> HandoffShutdownOutcome {
        let kind: HandoffShutdownOutcome.Kind
        if (error as? HandoffError)?.code == .timeout {
            kind = storeReachable ? .budgetExceeded : .brokerUnreachable
        } else {
            kind = storeReachable ? .transportFailed : .brokerUnreachable
        }
        return HandoffShutdownOutcome(
            label: label,
            kind: kind,
            handoffID: envelope.id,
            duration: elapsed,
            detail: Self.detail(kind, error: "\(error)")
        )
    }

    /// The outcome of a participant still in flight at the deadline.
    private func unfinishedOutcome(_ label: HandoffLabel, _ envelope: HandoffEnvelope?, elapsed: Duration) -> HandoffShutdownOutcome {
        guard let envelope else {
            return HandoffShutdownOutcome(
                label: label,
                kind: .budgetExceeded,
                duration: elapsed,
                detail: "the participant did not give its state within the budget of \(configuration.shutdownBudget); "
                    + "nothing was published"
            )
        }
        let kind: HandoffShutdownOutcome.Kind = storeReachable ? .budgetExceeded : .brokerUnreachable
        return HandoffShutdownOutcome(
            label: label,
            kind: kind,
            handoffID: envelope.id,
            bytes: envelope.data.count,
            duration: elapsed,
            detail: Self.detail(kind, error: "no acknowledgement within the budget of \(configuration.shutdownBudget)")
        )
    }

    private static func detail(_ kind: HandoffShutdownOutcome.Kind, error: String) -> String {
        switch kind {
        case .budgetExceeded:
            return "\(error); the handoff was sent but not acknowledged in time: it may still arrive, or be lost"
        case .brokerUnreachable:
            return "\(error); the broker was unreachable, the handoff was NOT stored"
        case .transportFailed:
            return "\(error); the handoff was NOT stored"
        case .handedOff, .encodingFailed, .fenced:
            return error
        }
    }

    /// Whether the transport reaches its store now (transports that cannot tell are taken as connected).
    private var storeReachable: Bool {
        (transport as? any HandoffTransportConnectivity)?.isConnectedToStore ?? true
    }

    /// Writes the envelope to the fallback directory, if one is configured; returns the file.
    private func saveFallback(_ envelope: HandoffEnvelope) -> String? {
        guard let directory = configuration.fallbackDirectory else { return nil }
        do {
            return try HandoffFallbackStore(directory: directory).save(envelope)
        } catch {
            logger.error(
                "could not write the envelope to the fallback directory",
                metadata: [
                    "handoff.label": "\(envelope.label)", "handoff.id": "\(envelope.id)",
                    "handoff.fallback_directory": "\(directory.path)", "handoff.error": "\(error)",
                ]
            )
            return nil
        }
    }

    private func log(_ outcome: HandoffShutdownOutcome) {
        var metadata: Logger.Metadata = [
            "handoff.label": "\(outcome.label)", "handoff.outcome": "\(outcome.kind.rawValue)",
            "handoff.duration": "\(outcome.duration)",
        ]
        if let id = outcome.handoffID { metadata["handoff.id"] = "\(id)" }
        if let bytes = outcome.bytes { metadata["handoff.bytes"] = "\(bytes)" }
        if let file = outcome.fallbackFile { metadata["handoff.fallback_file"] = "\(file)" }
        if outcome.isHandedOff {
            logger.debug("state handed off", metadata: metadata)
        } else if outcome.kind == .fenced {
            metadata["handoff.detail"] = "\(outcome.detail ?? "")"
            logger.warning("state not handed off: successors own it", metadata: metadata)
        } else {
            metadata["handoff.detail"] = "\(outcome.detail ?? "")"
            logger.error("state NOT handed off", metadata: metadata)
        }
    }
}
