import Foundation
import Handoff
import HandoffMQTT
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

    let drivers: [any ParticipantDriver]
    let logger: Logger
    let metrics: HandoffServiceMetrics
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

    /// The executor the participants' merges prefer: that of the MQTT connection's thread
    /// (`MQTTHandoffTransport.executor`), so that the notices and verdicts they wait for resume them without a thread
    /// hop; `nil` (the global executor) with other transports.
    var participantExecutor: (any TaskExecutor)? {
        (transport as? MQTTHandoffTransport)?.executor
    }

    /// The transport as one that keeps checkpoints, when it does.
    var checkpointTransport: (any HandoffCheckpointing)? {
        transport as? any HandoffCheckpointing
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
    ///
    /// - Throws: ``HandoffError/alreadyStarted(_:)`` when called a second time (a service runs once).
    public func run() async throws {
        let alreadyStarted = state.withLock { state in
            defer { state.started = true }
            return state.started
        }
        guard !alreadyStarted else { throw HandoffError.alreadyStarted("HandoffService.run()") }
        logger.info("handoff service started", metadata: ["handoff.participants": "\(drivers.count)"])
        if configuration.checkpointInterval != nil, checkpointTransport == nil {
            logger.warning(
                "checkpoints are configured, but the transport keeps none: a crash hands off nothing",
                metadata: ["handoff.transport": "\(type(of: transport))"]
            )
        }

        let shutdown = OneShotSignal()
        let graceful = await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                // In groups of at most 100 children: the runtime finds a finished child in its group's list
                // of children, so one group of 10,000 took quadratic time to end (seen in handoff-bench).
                // The merges run on the MQTT connection's own thread: a notice and a verdict resume them there.
                let executor = participantExecutor
                for start in stride(from: 0, to: drivers.count, by: 100) {
                    let chunk = drivers[start..<min(start + 100, drivers.count)]
                    group.addTask(executorPreference: executor) { [readiness] in
                        await withTaskGroup(of: Void.self) { inner in
                            for driver in chunk {
                                inner.addTask { await driver.mergeUntilCancelled(ready: readiness.arrive) }
                            }
                        }
                    }
                }
                if let checkpoints = checkpointTransport, let interval = configuration.checkpointInterval {
                    group.addTask { await self.checkpointUntilCancelled(into: checkpoints, every: interval) }
                    group.addTask { await self.reportFencing(of: checkpoints) }
                }
                let graceful = await shutdown.wait()
                // Checkpointing stops here, before the handoffs: the group waits for its last round (a checkpoint
                // sent before a handoff's checkpoint removal reaches the broker first, on the same connection).
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
}
