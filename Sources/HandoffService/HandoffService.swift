import Foundation
import Handoff
import Logging
import ServiceLifecycle
import Synchronization

/// Hosts handoff participants as a swift-service-lifecycle `Service` (the original's `use Handoff.Global`, for any
/// number of participants at once).
///
/// - ``run()`` subscribes every participant's label, merges the handoffs that wait and those that arrive
///   (claimed exactly once, merged inside the participant's isolation), until the group shuts down.
/// - At graceful shutdown it stops merging (a merge in progress is finished), snapshots every participant and
///   initiates all handoffs concurrently, waiting for each acknowledgement within
///   ``Configuration/shutdownBudget``. Every outcome is logged, counted and kept in ``shutdownReport``:
///   see ``HandoffShutdownOutcome/Kind`` for what happens when the budget runs out, when the broker is
///   unreachable, and when a state cannot be encoded.
///
/// All participants share one transport (one broker connection per process). Its lifecycle is not the service's:
/// with MQTT, place an ``MQTTHandoffTransportService`` before this service in the `ServiceGroup`, so that the
/// connection is closed after the handoffs:
///
/// ```swift
/// let connection = try await MQTTHandoffTransportService.connect(configuration: MQTTConfiguration(url: url))
/// let handoffs = HandoffService(transport: connection.transport, participants: [counter])
/// let group = ServiceGroup(services: [connection, handoffs], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
///
/// Use graceful shutdown (SIGTERM, `triggerGracefulShutdown()`); if the service is cancelled instead, it still
/// hands off within the budget, but a cancelled group may have closed the connection already.
public final class HandoffService: Service, Sendable {
    /// The transport all participants share.
    public let transport: any HandoffTransport
    /// The settings.
    public let configuration: Configuration
    /// The labels of the hosted participants, in the order given.
    public var labels: [HandoffLabel] { drivers.map(\.label) }

    private let drivers: [any ParticipantDriver]
    private let logger: Logger
    private let metrics: HandoffServiceMetrics
    private let readiness: ReadinessLatch
    private let state = Mutex(RunState())

    private struct RunState {
        var started = false
        var report: HandoffShutdownReport?
    }

    /// Creates a service hosting `participants` over `transport`.
    ///
    /// - Precondition: the participants' labels are distinct (two participants of one process under one label
    ///   would take each other's handoffs), and each participant's migrations lead to its version.
    public init(
        transport: any HandoffTransport,
        participants: [any HandoffParticipant],
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "handoff.service")
    ) {
        self.transport = transport
        self.configuration = configuration
        self.logger = logger
        let metrics = HandoffServiceMetrics(factory: configuration.metricsFactory)
        self.metrics = metrics
        let context = DriverContext(
            transport: transport,
            codec: configuration.codec,
            operationTimeout: configuration.operationTimeout,
            retryDelay: configuration.retryDelay,
            fallback: configuration.fallbackDirectory.map(HandoffFallbackStore.init(directory:)),
            metrics: metrics,
            logger: logger
        )
        let drivers = participants.map { Self.makeDriver(for: $0, context: context) }
        let labels = Set(drivers.map(\.label))
        precondition(labels.count == drivers.count, "HandoffService: two participants have the same handoff label")
        self.drivers = drivers
        self.readiness = ReadinessLatch(count: drivers.count)
    }

    private static func makeDriver<P: HandoffParticipant>(for participant: P, context: DriverContext) -> any ParticipantDriver {
        Driver(participant, context: context)
    }

    /// What the last shutdown did; `nil` until ``run()`` has returned.
    public var shutdownReport: HandoffShutdownReport? {
        state.withLock { $0.report }
    }

    /// Returns once every participant is subscribed and has merged what was waiting when it subscribed (so a
    /// process can start its work on top of its predecessor's state), or once the service shuts down.
    public func waitUntilReady() async {
        await readiness.wait()
    }

    /// Runs until graceful shutdown (or cancellation), then hands every participant's state off and returns.
    /// It can run once.
    public func run() async throws {
        let alreadyStarted = state.withLock { state in
            defer { state.started = true }
            return state.started
        }
        precondition(!alreadyStarted, "HandoffService.run() can be called once")
        logger.info("handoff service started", metadata: ["handoff.participants": "\(drivers.count)"])

        let shutdown = OneShotSignal()
        let graceful = await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for driver in drivers {
                    group.addTask { [readiness] in await driver.mergeUntilCancelled(ready: readiness.arrive) }
                }
                let graceful = await shutdown.wait()
                group.cancelAll()
                return graceful
            }
        } onGracefulShutdown: {
            shutdown.fire()
        }
        readiness.release()
        if !graceful {
            logger.warning(
                """
                the handoff service was cancelled instead of shut down gracefully; handing off anyway, but the \
                transport may be closing too
                """
            )
        }
        // The handoffs must happen even though this task may be cancelled: run them in a task of their own.
        let report = await Task { await self.handOffAll() }.value
        state.withLock { $0.report = report }
    }

    /// Hands every participant off concurrently and waits for the outcomes until the budget's deadline.
    private func handOffAll() async -> HandoffShutdownReport {
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
        let envelope: HandoffEnvelope
        do {
            envelope = try await driver.makeEnvelope(origin: transport.origin)
        } catch {
            let detail: String
            if case .encodingFailed(_, let encodingDetail) = error { detail = encodingDetail } else { detail = "\(error)" }
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
        switch error {
        case HandoffError.timeout:
            kind = storeReachable ? .budgetExceeded : .brokerUnreachable
        default:
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
        case .handedOff, .encodingFailed:
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
        } else {
            metadata["handoff.detail"] = "\(outcome.detail ?? "")"
            logger.error("state NOT handed off", metadata: metadata)
        }
    }
}
