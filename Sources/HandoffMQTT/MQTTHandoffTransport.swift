import Foundation
import Handoff
import Logging
import MosquittoClient
import Synchronization

/// The global handoff backend: handoffs live as retained messages on an MQTT broker (the original's
/// `Handoff.Global`). Implements the protocol of docs/PROTOCOL.md.
///
/// ```swift
/// let transport = try await MQTTHandoffTransport.connect(
///     configuration: try MQTTConfiguration(url: "mqtt://127.0.0.1:1883"))
/// let channel = HandoffChannel<Counter>(label: try HandoffLabel("counter"), transport: transport)
/// ```
///
/// One transport (one broker connection) serves any number of labels and channels in a process.
public final class MQTTHandoffTransport: HandoffTransport {
    /// Settings of the MQTT backend.
    public struct Options: Sendable {
        /// Topic prefix shared by all participants that should see each other's handoffs.
        public var prefix: String
        /// Payloads larger than this are not decoded but dead-lettered as `too-large`.
        public var maximumPayloadSize: Int
        /// MQTT 5 message expiry for waiting handoffs, in seconds; `nil` keeps them until claimed.
        public var handoffExpiry: UInt32?
        /// How long the broker keeps this participant's session (and queues its messages) while it is
        /// disconnected. A claim interrupted by a disconnect is resolved on reconnect within this time.
        public var sessionExpiry: UInt32

        public init(prefix: String = "handoff", maximumPayloadSize: Int = 64 * 1024 * 1024, handoffExpiry: UInt32? = nil, sessionExpiry: UInt32 = 300) {
            self.prefix = prefix
            self.maximumPayloadSize = maximumPayloadSize
            self.handoffExpiry = handoffExpiry
            self.sessionExpiry = sessionExpiry
        }
    }

    public let origin: HandoffOrigin
    /// The topic layout in use.
    public let topics: HandoffTopics
    /// The broker connection (owned by the transport).
    public let client: MQTTClient
    let router: HandoffRouter
    private let tasks: [Task<Void, Never>]
    private let logger: Logger

    /// Connects to the broker and starts routing handoff messages.
    ///
    /// The connection uses a persistent session (clean start off, ``Options/sessionExpiry``) with the client
    /// id `handoff-<origin.instance>`, so that the verdict of a claim interrupted by a lost connection is
    /// delivered after the reconnect.
    public static func connect(
        configuration: MQTTConfiguration,
        options: Options = Options(),
        origin: HandoffOrigin = .current(),
        logger: Logger = Logger(label: "handoff.mqtt")
    ) async throws -> MQTTHandoffTransport {
        let topics = try HandoffTopics(prefix: options.prefix)
        var configuration = configuration
        configuration.protocolVersion = .v5
        configuration.clientID = "handoff-\(origin.instance)"
        configuration.cleanStart = false
        configuration.sessionExpiryInterval = options.sessionExpiry
        let client = try MQTTClient(configuration: configuration, logger: logger)
        let transport = MQTTHandoffTransport(client: client, topics: topics, options: options, origin: origin, logger: logger)
        do {
            try await client.connect()
            _ = try await client.subscribe(topics.sync(instance: origin.instance), options: MQTTSubscribeOptions(qos: .atLeastOnce))
        } catch {
            await transport.shutdown()
            throw error
        }
        return transport
    }

    private init(client: MQTTClient, topics: HandoffTopics, options: Options, origin: HandoffOrigin, logger: Logger) {
        self.client = client
        self.topics = topics
        self.origin = origin
        self.logger = logger
        let router = HandoffRouter(client: client, topics: topics, options: options, origin: origin, logger: logger)
        self.router = router
        // Installed before connect() so that nothing the broker sends is missed. Messages are routed on
        // libmosquitto's network thread, in the order received, without a hop to a task.
        client.setMessageHandler { message in router.route(message) }
        let events = client.events()
        self.tasks = [
            Task { for await event in events { router.connectionChanged(event) } }
        ]
    }

    /// Disconnects from the broker. Waiting claims fail with ``HandoffError/shutdown``.
    public func shutdown() async {
        router.shutDown()
        await client.shutdown()
        for task in tasks { await task.value }
    }

    /// Returns once every message the broker had queued for this participant before the call has been
    /// processed: waiting handoffs, claims and verdicts included (see docs/PROTOCOL.md, "Ordering markers").
    public func sync(timeout: Duration = .seconds(10)) async throws {
        try await router.sync(timeout: timeout)
    }

    // MARK: - HandoffTransport

    public func watch(_ label: HandoffLabel) async throws -> AsyncStream<HandoffNotice> {
        let stream = router.startWatching(label)
        do {
            _ = try await client.subscribe(topics.handoffFilter(label), options: MQTTSubscribeOptions(qos: .atLeastOnce))
            // Retained handoffs are sent right after the SUBACK; the marker comes after them.
            try await router.sync(timeout: .seconds(10))
        } catch {
            router.stopWatching(label)
            throw HandoffError.transportUnavailable("Could not subscribe to handoffs for '\(label)': \(error)")
        }
        return stream
    }

    public func unwatch(_ label: HandoffLabel) async throws {
        router.stopWatching(label)
        do {
            try await client.unsubscribe(topics.handoffFilter(label))
        } catch let error as MQTTError where error.code == .shutdown {
            return
        } catch {
            throw HandoffError.transportUnavailable("Could not unsubscribe from handoffs for '\(label)': \(error)")
        }
    }

    public func pending(_ label: HandoffLabel) async throws -> [HandoffEnvelope] {
        try router.pending(label)
    }

    public func claim(_ envelope: HandoffEnvelope, timeout: Duration) async throws -> Bool {
        try await router.claim(envelope, timeout: timeout)
    }

    public func initiate(_ envelope: HandoffEnvelope, timeout: Duration) async throws {
        let topic = topics.handoff(envelope.label, id: envelope.id.rawValue)
        let properties = MQTTPublishProperties(messageExpiryInterval: router.options.handoffExpiry, contentType: HandoffRouter.contentType)
        let payload = envelope.encoded()
        // The PUBACK resumes this task directly; the time limit is kept by the shared TimeoutClock.
        let acknowledgement = Acknowledgement()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let timer = TimeoutClock.shared.schedule(after: timeout) {
                    acknowledgement.resume(.failure(HandoffError.timeout(operation: "initiate handoff '\(envelope.label)'/\(envelope.id)", after: timeout)))
                }
                acknowledgement.start(continuation, timer: timer)
                client.publish(topic, payload: payload, qos: .atLeastOnce, retain: true, properties: properties) { result in
                    acknowledgement.resume(result)
                }
            }
        } onCancel: {
            acknowledgement.resume(.failure(CancellationError()))
        }
        logger.debug("Handoff stored on the broker", metadata: ["handoff.label": "\(envelope.label)", "handoff.id": "\(envelope.id)", "handoff.bytes": "\(payload.count)"])
    }

    public func deadLetter(_ envelope: HandoffEnvelope, reason: HandoffRejection.Reason, detail: String, timeout: Duration) async throws {
        try await router.deadLetter(
            label: envelope.label, id: envelope.id.rawValue, payload: router.rawPayload(of: envelope), reason: reason, detail: detail, timeout: timeout
        )
    }

    public func deadLetters(_ label: HandoffLabel, timeout: Duration) async throws -> [DeadLetter] {
        try await router.collectDeadLetters(label, timeout: timeout)
    }
}

/// The one outcome of a publish whose acknowledgement a task waits for: the PUBACK, a failure, the time
/// limit or a cancellation, whichever comes first.
final class Acknowledgement: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Void, any Error>?
        var timer: TimeoutClock.Timeout?
        var early: Result<Void, any Error>?
        var finished = false
    }

    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<Void, any Error>, timer: TimeoutClock.Timeout) {
        let early = state.withLock { state -> Result<Void, any Error>? in
            if let early = state.early { return early }
            state.continuation = continuation
            state.timer = timer
            return nil
        }
        if let early {
            timer.cancel()
            continuation.resume(with: early)
        }
    }

    func resume(_ result: Result<Void, any Error>) {
        let (continuation, timer) = state.withLock { state -> (CheckedContinuation<Void, any Error>?, TimeoutClock.Timeout?) in
            guard !state.finished else { return (nil, nil) }
            state.finished = true
            guard let continuation = state.continuation else {
                // Cancelled before start: remember the outcome for start.
                state.early = result
                return (nil, nil)
            }
            defer {
                state.continuation = nil
                state.timer = nil
            }
            return (continuation, state.timer)
        }
        timer?.cancel()
        continuation?.resume(with: result)
    }
}
