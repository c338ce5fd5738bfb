import Foundation
import Handoff
import Logging

/// What every participant's driver shares: where handoffs wait, how states are encoded, where to log and count.
struct DriverContext: Sendable {
    let transport: any HandoffTransport
    let codec: any HandoffStateCodec
    let operationTimeout: Duration
    let retryDelay: Duration
    let fallback: HandoffFallbackStore?
    let metrics: HandoffServiceMetrics
    let logger: Logger
}

/// Drives one participant of any type: merges its handoffs while the service runs, and makes its envelope at
/// shutdown.
protocol ParticipantDriver: Sendable {
    /// The participant's label.
    var label: HandoffLabel { get }
    /// Subscribes, merges what is waiting, calls `ready`, then merges what arrives until the task is cancelled.
    /// A merge in progress when the task is cancelled is finished first (its handoffs are claimed: they must be
    /// merged before the state is snapshotted).
    func mergeUntilCancelled(ready: @escaping @Sendable () -> Void) async
    /// Snapshots the participant's state and encodes it into an envelope (through its channel, the one envelope writer):
    /// in wire form for a handoff, unstamped for a checkpoint (the transport stamps it).
    func makeEnvelope(forHandoff: Bool) async throws(HandoffError) -> HandoffEnvelope
    /// Tells the participant that successors took its state over (inside its isolation).
    func ownershipLost(_ fencing: HandoffFencing) async
}

extension ParticipantDriver {
    /// Snapshots the participant's state and stores it as its checkpoint.
    func checkpoint(into transport: any HandoffCheckpointing, onlyIfChanged: Bool, timeout: Duration) async throws
        -> HandoffCheckpointOutcome
    {
        guard !transport.isFenced(label) else { return .fenced }
        return try await transport.checkpoint(try await makeEnvelope(forHandoff: false), onlyIfChanged: onlyIfChanged, timeout: timeout)
    }
}

/// The driver of a participant of type `P`.
final class Driver<P: HandoffParticipant>: ParticipantDriver {
    let participant: P
    let label: HandoffLabel
    private let channel: HandoffChannel<P.State>
    private let context: DriverContext
    private let logger: Logger

    init(_ participant: P, context: DriverContext) {
        self.participant = participant
        self.label = participant.handoffLabel
        self.context = context
        var logger = context.logger
        logger[metadataKey: "handoff.label"] = "\(participant.handoffLabel)"
        self.logger = logger
        self.channel = HandoffChannel<P.State>(
            label: participant.handoffLabel,
            transport: context.transport,
            version: P.handoffVersion,
            migrations: P.handoffMigrations,
            codec: context.codec,
            validate: { try P.validateHandoff($0) },
            timeout: context.operationTimeout,
            logger: context.logger
        )
    }

    func mergeUntilCancelled(ready: @escaping @Sendable () -> Void) async {
        var readyCalled = false
        defer { if !readyCalled { ready() } }
        var notices: AsyncStream<HandoffNotice>?
        while notices == nil, !Task.isCancelled {
            do {
                notices = try await channel.subscribe()
            } catch {
                logger.warning(
                    "could not subscribe to handoffs; retrying",
                    metadata: ["handoff.error": "\(error)", "handoff.retry_in": "\(context.retryDelay)"]
                )
                try? await Task.sleep(for: context.retryDelay)
            }
        }
        guard let notices else { return }
        // What waited before the subscription is known now (the transport syncs before watch returns).
        await shielded { await self.mergeAvailable() }
        ready()
        readyCalled = true
        for await notice in notices {
            switch notice {
            case .available:
                await shielded { await self.mergeAvailable() }
            case .rejected(let rejection):
                logger.warning(
                    "\(rejection)",
                    metadata: ["handoff.id": "\(rejection.id)", "handoff.reason": "\(rejection.reason.rawValue)"]
                )
                context.metrics.countRejected(rejection.reason.rawValue)
            }
        }
    }

    /// Runs `body` in a task that the caller's cancellation does not reach, and waits for it.
    private func shielded(_ body: @escaping @Sendable () async -> Void) async {
        await Task { await body() }.value
    }

    /// Claims what is waiting and merges it; retries a few times when the transport fails part-way (what is not
    /// processed stays waiting, and the next notice tries again).
    private func mergeAvailable() async {
        let attempts = 3
        for attempt in 1...attempts {
            let clock = ContinuousClock()
            let start = clock.now
            let problem: (any Error)?
            do {
                let batch = try await channel.complete()
                for rejection in batch.rejected + batch.deferred {
                    context.metrics.countRejected(rejection.reason.rawValue)
                }
                if !batch.handoffs.isEmpty {
                    await merge(batch.handoffs)
                }
                context.metrics.mergeDuration.recordNanoseconds(start.duration(to: clock.now).nanoseconds)
                problem = batch.interruption
            } catch {
                problem = error
            }
            guard let problem else { return }
            if attempt == attempts {
                logger.warning(
                    "could not take over every waiting handoff; they stay waiting and are tried again at the next notice",
                    metadata: ["handoff.error": "\(problem)"]
                )
                return
            }
            logger.info(
                "taking over handoffs was interrupted; retrying",
                metadata: ["handoff.error": "\(problem)", "handoff.retry_in": "\(context.retryDelay)"]
            )
            try? await Task.sleep(for: context.retryDelay)
        }
    }

    /// Merges claimed handoffs inside the participant's isolation. If the strategy throws, they are dead-lettered
    /// (this participant owns them: they must not vanish).
    private func merge(_ handoffs: [ClaimedHandoff<P.State>]) async {
        do {
            try await participant.mergeClaimedHandoffs(handoffs)
            // Chunked handoffs (docs/PROTOCOL.md §12): their chunks are removed once merged, not before.
            await channel.merged(handoffs)
            context.metrics.claimed.increment(by: Int64(handoffs.count))
            for handoff in handoffs {
                logger.info(
                    "handoff merged",
                    metadata: [
                        "handoff.id": "\(handoff.id)", "handoff.vsn": "\(handoff.vsn)",
                        "handoff.origin": "\(handoff.origin.instance)",
                    ]
                )
            }
        } catch {
            for handoff in handoffs {
                await deadLetter(handoff, because: error)
            }
        }
    }

    /// A claimed handoff that the strategy could not merge: it goes to the transport's dead letters (MQTT: the
    /// retained dead-letter topic, with the payload as received) and, when configured, to the fallback directory.
    private func deadLetter(_ handoff: ClaimedHandoff<P.State>, because error: any Error) async {
        context.metrics.countRejected(HandoffRejection.Reason.mergeFailed.rawValue)
        var metadata: Logger.Metadata = ["handoff.id": "\(handoff.id)", "handoff.error": "\(error)"]
        let envelope: HandoffEnvelope
        do {
            envelope = try channel.receivedEnvelope(of: handoff)
        } catch {
            metadata["handoff.encoding_error"] = "\(error)"
            logger.error("the merge strategy threw and the claimed state cannot be encoded: it is LOST", metadata: metadata)
            return
        }
        if let fallback = context.fallback {
            do {
                metadata["handoff.fallback_file"] = "\(try fallback.save(envelope))"
            } catch let saveError {
                metadata["handoff.fallback_error"] = "\(saveError)"
            }
        }
        do {
            try await channel.deadLetter(envelope, reason: .mergeFailed, detail: "the merge strategy threw: \(error)")
            logger.error(
                "the merge strategy threw; the claimed handoff was not merged and was passed to the dead letters",
                metadata: metadata
            )
        } catch let deadLetterError {
            metadata["handoff.dead_letter_error"] = "\(deadLetterError)"
            logger.error(
                """
                the merge strategy threw and the claimed handoff could not be dead-lettered; only the fallback file \\
                (if any) keeps it
                """,
                metadata: metadata
            )
        }
    }

    func ownershipLost(_ fencing: HandoffFencing) async {
        await participant.handoffOwnershipLost(fencing)
    }

    func makeEnvelope(forHandoff: Bool) async throws(HandoffError) -> HandoffEnvelope {
        let state = await participant.stateForHandoff()
        return forHandoff ? try channel.handoffEnvelope(for: state) : try channel.envelope(for: state)
    }
}
