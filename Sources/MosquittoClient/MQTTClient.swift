import CMosquitto
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
    private let logger: Logger
    private let lifecycle = Mutex(Lifecycle())

    private struct Lifecycle {
        var connectCalled = false
        var loopStarted = false
        var tornDown = false
    }

    /// Creates a client; nothing is sent until ``connect()``.
    public init(configuration: MQTTConfiguration, logger: Logger = Logger(label: "mqtt")) throws {
        MosquittoLibrary.initialize()
        self.configuration = configuration
        self.logger = logger
        let clientID = configuration.clientID ?? "swift-\(UUID().uuidString.lowercased())"
        self.clientID = clientID
        guard !configuration.host.isEmpty, (1...65535).contains(configuration.port) else {
            throw MQTTError(.invalidConfiguration, "The broker address '\(configuration.host):\(configuration.port)' is not valid")
        }
        guard let pointer = mosquitto_new(clientID, configuration.cleanStart, nil) else {
            throw MQTTError(.invalidConfiguration, "libmosquitto could not create a client (out of memory or an invalid client id '\(clientID)')")
        }
        let handle = MosquittoHandle(pointer: pointer)
        self.handle = handle
        self.core = ClientCore(
            handle: handle, host: configuration.host, port: configuration.port, protocolVersion: configuration.protocolVersion, logger: logger
        )
        do {
            try Self.configure(handle: handle, configuration)
        } catch {
            mosquitto_destroy(pointer)
            throw error
        }
        // The core lives as long as the handle: released in teardown right after mosquitto_destroy.
        mosquitto_user_data_set(pointer, Unmanaged.passRetained(core).toOpaque())
        Self.installCallbacks(pointer)
    }

    deinit {
        // A client dropped without shutdown(): tear down in the background, bounded, without waiting.
        if core.markShutDown() {
            let (handle, core) = (self.handle, self.core)
            let loopStarted = lifecycle.withLock { $0.loopStarted }
            Thread { Self.teardown(handle: handle, core: core, loopStarted: loopStarted, grace: .milliseconds(200)) }.start()
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
        // mosquitto_connect resolves the host and opens the TCP (and TLS) connection synchronously.
        let (rc, savedErrno): (Int32, Int32) = await runOnDedicatedThread(name: "mqtt-connect") {
            let properties = MosquittoPropertyList()
            if configuration.protocolVersion == .v5, configuration.sessionExpiryInterval > 0 {
                try? properties.add(Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue), uint32: configuration.sessionExpiryInterval)
            }
            errno = 0
            let rc = mosquitto_connect_bind_v5(
                handle.pointer, configuration.host, Int32(configuration.port), configuration.keepAlive, nil, properties.pointer
            )
            return (rc, errno)
        }
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            let logged = core.state.withLock { $0.lastLoggedError }
            throw MQTTError.mosquitto(rc, "connect to the MQTT broker at \(core.endpoint)", errno: savedErrno, logged: logged)
        }
        let core = self.core
        let timeout = configuration.connectTimeout
        let timer = Task {
            try await Task.sleep(for: timeout)
            let (continuation, logged) = core.state.withLock { ($0.connectContinuation.take(), $0.lastLoggedError) }
            let detail = logged.map { " (last error: \($0))" } ?? ""
            continuation?.resume(throwing: MQTTError(.timeout, "The broker at \(core.endpoint) did not answer CONNECT within \(timeout)\(detail)"))
        }
        defer { timer.cancel() }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            core.state.withLock { $0.connectContinuation = continuation }
            let rc = mosquitto_loop_start(handle.pointer)
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                lifecycle.withLock { $0.loopStarted = true }
            } else {
                let continuation = core.state.withLock { $0.connectContinuation.take() }
                continuation?.resume(throwing: MQTTError.mosquitto(rc, "start libmosquitto's network thread"))
            }
        }
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
        let propertyList = try preparePublish(topic, payload: payload, qos: qos, properties: properties)
        let (handle, core) = (self.handle, self.core)
        let token = core.makeToken()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                var mid: Int32 = 0
                let rc = handle.publish(mid: &mid, topic: topic, payload: payload, qos: qos, retain: retain, properties: propertyList?.pointer)
                // With QoS 1/2 libmosquitto queues the message even when disconnected (MOSQ_ERR_NO_CONN)
                // and sends it after the reconnect.
                if rc == MOSQ_ERR_SUCCESS.rawValue || (rc == MOSQ_ERR_NO_CONN.rawValue && qos != .atMostOnce) {
                    core.registerPublish(mid: mid, token: token, topic: topic, qos: qos, continuation: .continuation(continuation))
                } else {
                    core.forget(token: token)
                    continuation.resume(throwing: MQTTError.mosquitto(rc, "publish to '\(topic)'"))
                }
            }
        } onCancel: {
            core.cancel(token: token)
        }
    }

    /// Publishes like ``publish(_:payload:qos:retain:properties:)`` without waiting: `completion` is called
    /// once with the outcome (the acknowledgement, a refusal, a lost connection, shutdown), on libmosquitto's
    /// network thread, or on the caller's when the publish fails at once. It must be quick and must not block.
    /// For swift-handoff's own modules: no task waits, so an acknowledgement wakes nobody who does not need it.
    package func publish(
        _ topic: String,
        payload: Data,
        qos: MQTTQoS = .atLeastOnce,
        retain: Bool = false,
        properties: MQTTPublishProperties = .none,
        completion: @escaping @Sendable (Result<Void, any Error>) -> Void
    ) {
        let propertyList: MosquittoPropertyList?
        do {
            propertyList = try preparePublish(topic, payload: payload, qos: qos, properties: properties)
        } catch {
            return completion(.failure(error))
        }
        var mid: Int32 = 0
        let token = core.makeToken()
        let rc = handle.publish(mid: &mid, topic: topic, payload: payload, qos: qos, retain: retain, properties: propertyList?.pointer)
        if rc == MOSQ_ERR_SUCCESS.rawValue || (rc == MOSQ_ERR_NO_CONN.rawValue && qos != .atMostOnce) {
            core.registerPublish(mid: mid, token: token, topic: topic, qos: qos, continuation: .callback(completion))
        } else {
            completion(.failure(MQTTError.mosquitto(rc, "publish to '\(topic)'")))
        }
    }

    /// Checks that a publish can be made now and builds its MQTT 5 property list.
    private func preparePublish(_ topic: String, payload: Data, qos: MQTTQoS, properties: MQTTPublishProperties) throws -> MosquittoPropertyList? {
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
        return configuration.protocolVersion == .v5 && !properties.isEmpty ? try MosquittoPropertyList(publish: properties) : nil
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
        let (handle, core) = (self.handle, self.core)
        let previous = core.state.withLock { $0.subscriptions.updateValue(effective, forKey: filter) }
        let token = core.makeToken()
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: ClientCore.SubscribeContinuation) in
                    var mid: Int32 = 0
                    let rc = handle.subscribe(filter: filter, options: effective, mid: &mid)
                    if rc == MOSQ_ERR_SUCCESS.rawValue {
                        core.registerSubscribe(mid: mid, token: token, filter: filter, continuation: continuation)
                    } else {
                        core.forget(token: token)
                        continuation.resume(throwing: MQTTError.mosquitto(rc, "subscribe to '\(filter)'"))
                    }
                }
            } onCancel: {
                core.cancel(token: token)
            }
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
        let (handle, core) = (self.handle, self.core)
        core.state.withLock { _ = $0.subscriptions.removeValue(forKey: filter) }
        let token = core.makeToken()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: ClientCore.UnsubscribeContinuation) in
                var mid: Int32 = 0
                let rc = handle.unsubscribe(filter: filter, mid: &mid)
                if rc == MOSQ_ERR_SUCCESS.rawValue {
                    core.registerUnsubscribe(mid: mid, token: token, filter: filter, continuation: continuation)
                } else {
                    core.forget(token: token)
                    continuation.resume(throwing: MQTTError.mosquitto(rc, "unsubscribe from '\(filter)'"))
                }
            }
        } onCancel: {
            core.cancel(token: token)
        }
    }

    private func checkConnected(to what: String) throws {
        switch core.state.withLock({ $0.status }) {
        case .connected: return
        case .shutDown: throw ClientCore.shutdownError
        case .idle, .connecting: throw MQTTError(.notConnected, "Cannot \(what) before connect() has succeeded")
        case .disconnected: throw MQTTError(.notConnected, "Cannot \(what) while the connection to \(core.endpoint) is down; retry after the reconnect")
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

    /// Calls `handler` for every message received from now on, on libmosquitto's network thread, in the
    /// order received and before the message reaches the streams of ``messages()``; replaces any earlier
    /// handler. For swift-handoff's own modules, which route messages without a hop to a task: `handler` must
    /// be quick, must not block, and must not call ``shutdown()``.
    /// Makes the Will of each connection: `provider(n)` is asked for the Will of connection `n` (1 for the first
    /// ``connect()``, then one more after each lost connection, before the reconnect sends it), and replaces
    /// `configuration.will`. Call it before ``connect()``. It runs on libmosquitto's network thread: keep it short.
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

    /// Disconnects (sending DISCONNECT, so the broker does not publish the Will) and stops the network
    /// thread. Pending operations fail with `.shutdown`; streams finish.
    ///
    /// Returns within ``MQTTConfiguration/shutdownTimeout`` even when libmosquitto's thread is stuck (for
    /// example reconnecting to an unreachable broker): the thread is then abandoned, logged, and the
    /// client's memory is leaked rather than freed under it. Calling it again does nothing.
    public func shutdown() async {
        _ = core.markShutDown()
        let (handle, core) = (self.handle, self.core)
        let loopStarted: Bool? = lifecycle.withLock { state in
            guard !state.tornDown else { return nil }
            state.tornDown = true
            return state.loopStarted
        }
        guard let loopStarted else { return }
        let timeout = configuration.shutdownTimeout
        let grace = timeout / 3
        let finished: Void? = await runOnDedicatedThread(name: "mqtt-shutdown", timeout: timeout) {
            Self.teardown(handle: handle, core: core, loopStarted: loopStarted, grace: grace)
        }
        if finished == nil {
            logger.error(
                "libmosquitto's network thread did not stop in time; abandoned it",
                metadata: ["mqtt.broker": "\(core.endpoint)", "mqtt.timeout": "\(timeout)"]
            )
        } else {
            logger.debug("MQTT client shut down", metadata: ["mqtt.broker": "\(core.endpoint)"])
        }
    }

    /// Sends DISCONNECT, stops the network thread (forcibly if it does not stop within `grace`) and frees
    /// the client. Runs on a thread of its own, never on libmosquitto's.
    private static func teardown(handle: MosquittoHandle, core: ClientCore, loopStarted: Bool, grace: Duration) {
        if loopStarted {
            let graceful = mosquitto_disconnect_v5(handle.pointer, 0, nil) == MOSQ_ERR_SUCCESS.rawValue
                && core.disconnected.wait(timeout: .now() + .milliseconds(Int(grace.components.seconds * 1000 + grace.components.attoseconds / 1_000_000_000_000_000))) == .success
            // A forced stop cancels the thread even inside a blocking connect(); libmosquitto issues 2545/2328.
            mosquitto_loop_stop(handle.pointer, !graceful)
        }
        mosquitto_destroy(handle.pointer)
        Unmanaged.passUnretained(core).release()
    }

    // MARK: - Setup

    private static func configure(handle: MosquittoHandle, _ configuration: MQTTConfiguration) throws {
        let pointer = handle.pointer
        func check(_ rc: Int32, _ what: String) throws {
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                throw MQTTError(.invalidConfiguration, "Could not \(what): \(String(cString: mosquitto_strerror(rc)))")
            }
        }
        let version = configuration.protocolVersion == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311
        try check(mosquitto_int_option(pointer, MOSQ_OPT_PROTOCOL_VERSION, Int32(version)), "set the MQTT protocol version")
        try check(mosquitto_int_option(pointer, MOSQ_OPT_TCP_NODELAY, configuration.tcpNoDelay ? 1 : 0), "set TCP_NODELAY")
        if configuration.protocolVersion == .v5 {
            try check(mosquitto_int_option(pointer, MOSQ_OPT_RECEIVE_MAXIMUM, configuration.receiveMaximum), "set the receive maximum")
        }
        if configuration.maximumInflightMessages > 0 {
            try check(mosquitto_int_option(pointer, MOSQ_OPT_SEND_MAXIMUM, Int32(clamping: configuration.maximumInflightMessages)), "set the send maximum")
        }
        if configuration.username != nil || configuration.password != nil {
            try check(mosquitto_username_pw_set(pointer, configuration.username, configuration.password), "set the username and password")
        }
        if let tls = configuration.tls {
            for file in [tls.caFile, tls.certificateFile, tls.keyFile].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: file) {
                throw MQTTError(.tlsFailure, "The TLS file '\(file)' does not exist or is not readable")
            }
            if tls.caFile == nil {
                try check(mosquitto_int_option(pointer, MOSQ_OPT_TLS_USE_OS_CERTS, 1), "use the system's CA certificates")
            }
            if tls.caFile != nil || tls.certificateFile != nil {
                let rc = mosquitto_tls_set(pointer, tls.caFile, nil, tls.certificateFile, tls.keyFile, nil)
                guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                    throw MQTTError(.tlsFailure, "Could not load the TLS files (CA \(tls.caFile ?? "system"), certificate \(tls.certificateFile ?? "none")): \(String(cString: mosquitto_strerror(rc)))")
                }
            }
            try check(mosquitto_tls_insecure_set(pointer, !tls.verifyHostname), "set TLS host name verification")
        }
        try handle.setWill(configuration.will, protocolVersion: configuration.protocolVersion)
        let reconnect = configuration.reconnect
        try check(mosquitto_reconnect_delay_set(pointer, reconnect.initialDelay, reconnect.maximumDelay, true), "set the reconnect delay")
    }

    private static func installCallbacks(_ pointer: OpaquePointer) {
        mosquitto_connect_v5_callback_set(pointer) { _, userdata, reasonCode, flags, _ in
            uncancellable { ClientCore.from(userdata)?.didConnect(reasonCode: reasonCode, flags: flags) }
        }
        mosquitto_disconnect_v5_callback_set(pointer) { _, userdata, rc, _ in
            uncancellable { ClientCore.from(userdata)?.didDisconnect(rc: rc) }
        }
        mosquitto_publish_v5_callback_set(pointer) { _, userdata, mid, reasonCode, _ in
            uncancellable { ClientCore.from(userdata)?.didPublish(mid: mid, reasonCode: reasonCode) }
        }
        mosquitto_subscribe_v5_callback_set(pointer) { _, userdata, mid, count, granted, _ in
            let first = count > 0 ? granted?.pointee ?? 0x80 : 0x80
            uncancellable { ClientCore.from(userdata)?.didSubscribe(mid: mid, granted: first) }
        }
        mosquitto_unsubscribe_v5_callback_set(pointer) { _, userdata, mid, _ in
            uncancellable { ClientCore.from(userdata)?.didUnsubscribe(mid: mid) }
        }
        mosquitto_message_v5_callback_set(pointer) { _, userdata, message, properties in
            uncancellable { receive(userdata, message, properties) }
        }
        mosquitto_log_callback_set(pointer) { _, userdata, level, text in
            guard let text else { return }
            uncancellable { ClientCore.from(userdata)?.didLog(level: level, text: String(cString: text)) }
        }
    }
}

/// Runs a callback's Swift code on libmosquitto's network thread with the thread's cancellation disabled. A forced
/// stop (`mosquitto_loop_stop(_, true)`, which is `pthread_cancel`) must only ever cancel the thread inside
/// libmosquitto (a blocking connect or select), never inside a lock our code holds there: cancelled while writing a
/// log line, the thread left standard error's lock taken, and every later log line or print of the process blocked.
private func uncancellable(_ body: () -> Void) {
    var previous: Int32 = 0
    pthread_setcancelstate(Int32(PTHREAD_CANCEL_DISABLE), &previous)
    body()
    pthread_setcancelstate(previous, nil)
}

/// The message callback: copies the message (taking its payload over where that is safe) and routes it.
private func receive(
    _ userdata: UnsafeMutableRawPointer?, _ message: UnsafePointer<mosquitto_message>?, _ properties: OpaquePointer?
) {
    guard let core = ClientCore.from(userdata), let message else { return }
    // libmosquitto frees the message when the callback returns: copy everything now, except the payload,
    // which is taken over (no copy: a handed-off state can be many megabytes). libmosquitto 2.0 allocates
    // it with calloc and frees it after the callback only if it is still set (message__cleanup), so
    // clearing the pointer hands the buffer to Data. QoS 2 messages are stored by libmosquitto after
    // the callback in some versions: their payload is copied, and so is every payload with a libmosquitto
    // other than 2.0.x, whose internals this relies on.
    let m = message.pointee
    let payload: Data
    if m.payloadlen > 0, let bytes = m.payload {
        if m.qos < 2 && MosquittoLibrary.payloadTakeoverIsSafe {
            UnsafeMutablePointer(mutating: message).pointee.payload = nil
            payload = Data(bytesNoCopy: bytes, count: Int(m.payloadlen), deallocator: .free)
        } else {
            payload = Data(bytes: bytes, count: Int(m.payloadlen))
        }
    } else {
        payload = Data()
    }
    core.didReceive(
        MQTTMessage(
            topic: String(cString: m.topic),
            payload: payload,
            qos: MQTTQoS(rawValue: m.qos) ?? .atMostOnce,
            retain: m.retain,
            properties: MQTTPublishProperties(copying: properties)
        )
    )
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

extension ClientCore {
    /// The core behind a callback's userdata pointer.
    static func from(_ userdata: UnsafeMutableRawPointer?) -> ClientCore? {
        userdata.map { Unmanaged<ClientCore>.fromOpaque($0).takeUnretainedValue() }
    }
}
