import Handoff
import Logging

/// The crash half of ``HandoffService``: while it runs, every participant's state is checkpointed every
/// ``Configuration/checkpointInterval`` (so a process killed without warning loses at most that much), and a
/// participant whose state successors took over (fencing) is told so.
extension HandoffService {
    /// Checkpoints every participant once per `interval`, `checkpointConcurrency` at a time, until cancelled.
    func checkpointUntilCancelled(into transport: any HandoffCheckpointing, every interval: Duration) async {
        // The first checkpoint holds what was merged at start.
        await waitUntilReady()
        let clock = ContinuousClock()
        while !Task.isCancelled {
            let start = clock.now
            var counts: [String: Int] = [:]
            await withTaskGroup(of: String.self) { group in
                var next = drivers.startIndex
                func addNext() {
                    guard next < drivers.endIndex else { return }
                    let driver = drivers[next]
                    next += 1
                    group.addTask { await self.checkpoint(driver, into: transport) }
                }
                for _ in 0..<configuration.checkpointConcurrency { addNext() }
                for await outcome in group {
                    counts[outcome, default: 0] += 1
                    if !Task.isCancelled { addNext() }
                }
            }
            let elapsed = start.duration(to: clock.now)
            metrics.checkpointRoundDuration.recordNanoseconds(elapsed.nanoseconds)
            logger.debug(
                "checkpoint round done",
                metadata: ["handoff.duration": "\(elapsed)", "handoff.outcomes": "\(counts.sorted { $0.key < $1.key })"]
            )
            try? await Task.sleep(until: start + interval)
        }
    }

    /// One participant's checkpoint; returns the outcome's metric name.
    private func checkpoint(_ driver: any ParticipantDriver, into transport: any HandoffCheckpointing) async -> String {
        let outcome: String
        do {
            outcome = try await driver.checkpoint(
                into: transport, onlyIfChanged: configuration.checkpointOnlyWhenChanged, timeout: configuration.operationTimeout
            ).rawValue
        } catch is CancellationError {
            return HandoffServiceMetrics.checkpointFailed
        } catch {
            logger.debug("checkpoint not stored", metadata: ["handoff.label": "\(driver.label)", "handoff.error": "\(error)"])
            outcome = HandoffServiceMetrics.checkpointFailed
        }
        metrics.checkpoints[outcome]?.increment()
        return outcome
    }

    /// Tells each participant whose state successors took over, counts it, and logs it at error.
    func reportFencing(of transport: any HandoffCheckpointing) async {
        let drivers = Dictionary(self.drivers.map { ($0.label, $0) }, uniquingKeysWith: { first, _ in first })
        for await fencing in transport.fencing() {
            guard let driver = drivers[fencing.label] else { continue }
            metrics.fenced.increment()
            logger.error(
                "successors took over this participant's state: it is no longer checkpointed and will not be handed off",
                metadata: ["handoff.label": "\(fencing.label)", "handoff.reason": "\(fencing.reason)"]
            )
            await driver.ownershipLost(fencing)
        }
    }
}
