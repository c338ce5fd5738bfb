import AsyncCompletion
import Foundation
import Logging
import Synchronization

/// An asynchronous MQTT 5 / 3.1.1 client over libmosquitto.
///
/// ```swift
/// let client = try MQTTClient(configuration: MQTTConfiguration(url: "mqtt://127.0.0.1:1883"))
/// try await client.connect()
/// let messages = client.messages()
/// _ = try await client.subscribe("sensors/#")
/// try await client.publish("sensors/1", payload: Data("21.5".utf8), qos: .atLeastOnce)
/// for await message in messages { print(message.topic) }
/// await client.shutdown()
/// ```
///
/// - Every operation returns when the broker has acknowledged it (PUBACK, PUBCOMP, SUBACK, UNSUBACK);
///   any number of them may be in flight at once.
/// - After the first successful ``connect()``, the client reconnects by itself with exponential backoff,
///   reports it on ``events()``, and restores its subscriptions if the broker kept no session.
///   QoS 1/2 publishes made while disconnected wait for the reconnect; QoS 0 publishes fail.
/// - ``shutdown()`` always returns within ``MQTTConfiguration/shutdownTimeout``.
public final class MQTTClient: Sendable {
    /// The configuration the client was made with.
    public let configuration: MQTTConfiguration
    /// The MQTT client identifier used (generated when the configuration has none).
    public let clientID: String

    private let handle: MosquittoHandle
    private let core: ClientCore
    private let loop: MosquittoLoop
    private let logger: Logger
    private let lifecycle = Mutex(Lifecycle())

    private struct Lifecycle {
        var connectCalled = false
        var tornDown = false
    }

    /// The executor of the client's own thread, which reads and writes the broker connection and runs every
    /// callback: a task that prefers it (`withTaskExecutorPreference(client.executor)`, `Task(executorPreference:)`)
    /// runs there between two reads of the socket. A message it waits for on ``messages()``, or an acknowledgement its
    /// publish waits for, then resumes it on that thread right after the callback, without a wake-up of another
    /// thread, and what it publishes is written to the socket at once.
    ///
    /// Use it for short, latency-sensitive work that reacts to messages; anything that blocks or computes for long
    /// delays every message and acknowledgement of the client. Jobs enqueued after ``shutdown()`` run on the global
    /// concurrent executor. Not a `SerialExecutor`: actors keep their own.
    public var executor: any TaskExecutor { loop }

    /// Whether the caller runs on the client's own thread (that of ``executor``).
    package var isOnClientThread: Bool { loop.isLoopThread }

    /// Creates a client; nothing is sent until ``connect()``.
    public init(configuration: MQTTConfiguration, logger: Logger = Logger(label: "mqtt")) throws {
        self.configuration = configuration
        self.logger = logger
        let clientID = configuration.clientID ?? "swift-\(UUID().uuidString.lowercased())"
        self.clientID = clientID
        guard !configuration.host.isEmpty, (1...65535).contains(configuration.port) else {
            throw MQTTError(.invalidConfiguration, "The broker address '\(configuration.host):\(configuration.port)' is not valid")
        }
        let handle = try MosquittoHandle(clientID: clientID, cleanStart: configuration.cleanStart)
        self.handle = handle
        let core = ClientCore(
            handle: handle, host: configuration.host, port: configuration.port, protocolVersion: configuration.protocolVersion,
            logger: logger
        )
        self.core = core
        do {
            try handle.configure(configuration)
            // Starts the client's thread; the loop (and its core) lives as long as the handle, which it destroys.
            self.loop = try MosquittoLoop(handle: handle, core: core, configuration: configuration)
        } catch {
            handle.destroy(releasing: nil)
            throw error
        }
    }

    deinit {
        // A client dropped without shutdown(): tear down in the background, bounded, without waiting.
        if core.markShutDown() {
            loop.stop(grace: configuration.shutdownTimeout / 3)
        }
    }

    // MARK: - Connection

    /// Connects to the broker and waits for its CONNACK (at most ``MQTTConfiguration/connectTimeout``).
    ///
    /// Throws ``MQTTError`` with code `.brokerUnreachable`, `.connectionRefused`, `.badCredentials`,
    /// `.tlsFailure` or `.timeout`. A client whose connect failed is shut down: create a new one to retry.
    /// Can be called once per client.
    public func connect() async throws {
        let alreadyCalled = lifecycle.withLock { state in
            defer { state.connectCalled = true }
            return state.connectCalled
        }
        guard !alreadyCalled else {
            throw MQTTError(.invalidConfiguration, "connect() was already called on this client; create a new client to connect again")
        }
        do {
            try await establishConnection()
            logger.info("Connected to the MQTT broker", metadata: ["mqtt.broker": "\(core.endpoint)", "mqtt.client_id": "\(clientID)"])
        } catch {
            await shutdown()
            throw error
        }
    }

    private func establishConnection() async throws {
        let canConnect = core.state.withLock { state in
            guard state.status == .idle else { return false }
            state.status = .connecting
            return true
        }
        guard canConnect else { throw ClientCore.shutdownError }
        try core.prepareNextWill()
        let (handle, configuration) = (self.handle, self.configuration)
        // The connect resolves the host and opens the TCP (and TLS) connection synchronously.
        let loop = self.loop
        let outcome = await runOnDedicatedThread(name: "mqtt-connect") { loop.connect { handle.connect(configuration) } }
        guard let outcome else { throw ClientCore.shutdownError }
        if let failure = outcome {
            let logged = core.state.withLock { $0.lastLoggedError }
            throw failure.error("connect to the MQTT broker at \(core.endpoint)", logged: logged)
        }
        let core = self.core
        let timeout = configuration.connectTimeout
        // Resumed by the CONNACK, a lost connection, a TLS failure in libmosquitto's log or shutdown (ClientCore).
        let connected = Completion<Void>()
        core.state.withLock { $0.connecting = connected }
        do {
            try loop.start()
        } catch {
            connected.resume(throwing: error)
        }
        // Not cancellable: the loop thread reads the connection now, and connect() shuts the client down when this throws.
        try await connected.wait(
            timeLimit: timeout,
            onTimeLimit: {
                let detail = core.state.withLock { $0.lastLoggedError }.map { " (last error: \($0))" } ?? ""
                return .failure(MQTTError(.timeout, "The broker at \(core.endpoint) did not answer CONNECT within \(timeout)\(detail)"))
            },
            cancellable: false
        )
    }

    /// `true` while the broker connection is up.
    public var isConnected: Bool {
        core.state.withLock { $0.status == .connected }
    }

    // MARK: - Publish

    /// Publishes a message and returns when the broker has acknowledged it: PUBACK for QoS 1, PUBCOMP for
    /// QoS 2, and for QoS 0 when it has been written to the socket.
    ///
    /// A zero-length retained publish clears the topic's retained message. Task cancellation stops the
    /// wait (the message may still reach the broker).
    public func publish(
        _ topic: String,
        payload: Data,
        qos: MQTTQoS = .atLeastOnce,
        retain: Bool = false,
        properties: MQTTPublishProperties = .none
    ) async throws {
        try preparePublish(topic, payload: payload, qos: qos)
        // With QoS 1/2 libmosquitto queues the message even when disconnected and sends it after the reconnect.
        let mid = try handle.publish(
            topic, payload: payload, qos: qos, retain: retain, properties: properties, protocolVersion: configuration.protocolVersion)
        loop.afterOperation()
        let acknowledged = Completion<Void>()
        core.registerPublish(mid: mid, topic: topic, qos: qos, completion: acknowledged)
        try await acknowledged.value
    }

    /// Publishes like ``publish(_:payload:qos:retain:properties:)`` without waiting: `completion` is called
    /// once with the outcome (the acknowledgement, a refusal, a lost connection, shutdown), on the client's
    /// thread (or the caller's, for QoS 0 or when the publish fails at once). It must be quick and must not block.
    /// For swift-handoff's own modules: no task waits, so an acknowledgement wakes nobody who does not need it.
    package func publish(
        _ topic: String,
        payload: Data,
        qos: MQTTQoS = .atLeastOnce,
        retain: Bool = false,
        properties: MQTTPublishProperties = .none,
        completion: @escaping @Sendable (Result<Void, any Error>) -> Void
    ) {
        let mid: Int32
        do {
            try preparePublish(topic, payload: payload, qos: qos)
            mid = try handle.publish(
                topic, payload: payload, qos: qos, retain: retain, properties: properties, protocolVersion: configuration.protocolVersion)
        } catch {
            return completion(.failure(error))
        }
        loop.afterOperation()
        let acknowledged = Completion<Void>()
        acknowledged.onFinish(completion)
        core.registerPublish(mid: mid, topic: topic, qos: qos, completion: acknowledged)
    }

    /// Checks that a publish can be made now.
    private func preparePublish(_ topic: String, payload: Data, qos: MQTTQoS) throws {
        guard payload.count <= 268_435_455 else {
            throw MQTTError(.payloadTooLarge, "A payload of \(payload.count) bytes exceeds MQTT's limit of 268,435,455 bytes")
        }
        let status = core.state.withLock { $0.status }
        switch status {
        case .shutDown: throw ClientCore.shutdownError
        case .idle, .connecting: throw MQTTError(.notConnected, "Cannot publish to '\(topic)' before connect() has succeeded")
        case .disconnected where qos == .atMostOnce:
            throw MQTTError(.notConnected, "Cannot publish to '\(topic)' at QoS 0 while the connection to \(core.endpoint) is down")
        case .connected, .disconnected: break
        }
    }

    // MARK: - Subscribe

    /// Subscribes and returns the QoS the broker granted once it has acknowledged the subscription.
    /// Throws `.subscriptionRefused` (with the broker's reason code) when the broker refuses it.
    ///
    /// The subscription is remembered and restored after a reconnect. Messages arrive on ``messages()``.
    @discardableResult
    public func subscribe(_ filter: String, options: MQTTSubscribeOptions = MQTTSubscribeOptions()) async throws -> MQTTQoS {
        let effective = configuration.protocolVersion == .v5 ? options : MQTTSubscribeOptions(qos: options.qos)
        try checkConnected(to: "subscribe to '\(filter)'")
        let previous = core.state.withLock { $0.subscriptions.updateValue(effective, forKey: filter) }
        do {
            let mid = try handle.subscribe(filter, options: effective)
            loop.afterOperation()
            let granted = Completion<MQTTQoS>()
            core.registerSubscribe(mid: mid, filter: filter, completion: granted)
            return try await granted.value
        } catch let error as MQTTError where error.code != .connectionLost {
            core.state.withLock { state in
                if let previous { state.subscriptions[filter] = previous } else { state.subscriptions[filter] = nil }
            }
            throw error
        }
    }

    /// Unsubscribes and returns when the broker has acknowledged it.
    public func unsubscribe(_ filter: String) async throws {
        try checkConnected(to: "unsubscribe from '\(filter)'")
        core.state.withLock { _ = $0.subscriptions.removeValue(forKey: filter) }
        let mid = try handle.unsubscribe(filter)
        loop.afterOperation()
        let acknowledged = Completion<Void>()
        core.registerUnsubscribe(mid: mid, filter: filter, completion: acknowledged)
        try await acknowledged.value
    }

    private func checkConnected(to what: String) throws {
        switch core.state.withLock({ $0.status }) {
        case .connected: return
        case .shutDown: throw ClientCore.shutdownError
        case .idle, .connecting: throw MQTTError(.notConnected, "Cannot \(what) before connect() has succeeded")
        case .disconnected:
            throw MQTTError(.notConnected, "Cannot \(what) while the connection to \(core.endpoint) is down; retry after the reconnect")
        }
    }

    // MARK: - Streams

    /// A new stream of every message received from now on, for every subscription of this client.
    /// Each call returns an independent stream; it finishes when the client shuts down.
    /// Buffering is unbounded: consume it promptly.
    public func messages() -> AsyncStream<MQTTMessage> {
        let (stream, continuation) = AsyncStream.makeStream(of: MQTTMessage.self)
        register(continuation, in: \.messageListeners)
        return stream
    }

    /// Makes the Will of each connection: `provider(n)` is asked for the Will of connection `n` (1 for the first
    /// ``connect()``, then one more after each lost connection, before the reconnect sends it), and replaces
    /// `configuration.will`. Call it before ``connect()``. It runs on the client's thread: keep it short.
    ///
    /// A Will is fixed at CONNECT, so this is how a Will can name the connection it belongs to (an incarnation, as
    /// Sparkplug's bdSeq).
    package func setWillProvider(_ provider: @escaping @Sendable (UInt64) -> MQTTConfiguration.Will?) {
        core.state.withLock { state in
            guard state.status == .idle else { return }
            state.willProvider = provider
        }
    }

    /// The number of the connection established last (1 for the first; see ``setWillProvider(_:)``), 0 before it.
    package var connectionNumber: UInt64 {
        core.state.withLock { $0.connectionNumber }
    }

    /// Calls `handler` for every message received from now on, on the client's thread, in the
    /// order received and before the message reaches the streams of ``messages()``; replaces any earlier
    /// handler. For swift-handoff's own modules, which route messages without a hop to a task: `handler` must
    /// be quick, must not block, and must not call ``shutdown()``.
    package func setMessageHandler(_ handler: @escaping @Sendable (MQTTMessage) -> Void) {
        core.state.withLock { state in
            guard state.status != .shutDown else { return }
            state.messageHandler = handler
        }
    }

    /// A new stream of connection events (connected, disconnected, resubscribed) from now on.
    public func events() -> AsyncStream<MQTTConnectionEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: MQTTConnectionEvent.self)
        register(continuation, in: \.eventListeners)
        return stream
    }

    private func register<Element>(
        _ continuation: AsyncStream<Element>.Continuation,
        in listeners: WritableKeyPath<ClientCore.State, [UInt64: AsyncStream<Element>.Continuation]> & Sendable
    ) {
        let core = self.core
        let id: UInt64? = core.state.withLock { state in
            guard state.status != .shutDown else { return nil }
            defer { state.nextListener += 1 }
            state[keyPath: listeners][state.nextListener] = continuation
            return state.nextListener
        }
        guard let id else {
            continuation.finish()
            return
        }
        continuation.onTermination = { _ in
            core.state.withLock { _ = $0[keyPath: listeners].removeValue(forKey: id) }
        }
    }

    // MARK: - Shutdown

    /// Disconnects (sending DISCONNECT, so the broker does not publish the Will) and stops the client's thread.
    /// Pending operations fail with `.shutdown`; streams finish.
    ///
    /// Returns within ``MQTTConfiguration/shutdownTimeout`` even when the client's thread is stuck (for example in
    /// a blocking reconnect to an unreachable broker): the thread is then abandoned, logged, and frees the client
    /// itself when it returns. Calling it again does nothing.
    public func shutdown() async {
        _ = core.markShutDown()
        let (loop, core) = (self.loop, self.core)
        let first = lifecycle.withLock { state in
            defer { state.tornDown = true }
            return !state.tornDown
        }
        guard first else { return }
        // (Ended by the loop once it stopped; here too if it was abandoned.)
        defer { core.endMessageDelivery() }
        let timeout = configuration.shutdownTimeout
        // A third of the time for the DISCONNECT to go out, then the thread ends (unless a blocking call holds it).
        loop.stop(grace: timeout / 3)
        let stopped = await runOnDedicatedThread(name: "mqtt-shutdown") { loop.waitUntilDestroyed(timeout: timeout) }
        if stopped {
            logger.debug("MQTT client shut down", metadata: ["mqtt.broker": "\(core.endpoint)"])
        } else {
            logger.error(
                "The MQTT client's thread did not stop in time; abandoned it (it frees the client when it returns)",
                metadata: ["mqtt.broker": "\(core.endpoint)", "mqtt.timeout": "\(timeout)"]
            )
        }
    }
}

extension MQTTClient {
    /// Connects, runs `body`, and always shuts the client down afterwards.
    public static func withConnection<T>(
        _ configuration: MQTTConfiguration,
        logger: Logger = Logger(label: "mqtt"),
        _ body: (MQTTClient) async throws -> T
    ) async throws -> T {
        let client = try MQTTClient(configuration: configuration, logger: logger)
        try await client.connect()
        do {
            let result = try await body(client)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }
}
