import Foundation
import Logging
import Synchronization

/// The mutable heart of an ``MQTTClient``: pending operations, subscriptions, listeners, connection status.
///
/// libmosquitto's network thread calls back into it through the callbacks' userdata pointer (no global
/// registry; see `Mosquitto/MosquittoCallbacks.swift`). Every callback copies what it needs out of
/// libmosquitto's memory, updates the state under one `Mutex`, and resumes continuations or yields to
/// streams after releasing it.
final class ClientCore: Sendable {
    typealias PublishContinuation = PublishCompletion
    typealias SubscribeContinuation = CheckedContinuation<MQTTQoS, any Error>
    typealias UnsubscribeContinuation = CheckedContinuation<Void, any Error>

    enum Status: Sendable {
        case idle
        case connecting
        case connected
        case disconnected
        case shutDown
    }

    /// Who waits for a publish's acknowledgement: a suspended task, or a callback.
    enum PublishCompletion: Sendable {
        case continuation(CheckedContinuation<Void, any Error>)
        case callback(@Sendable (Result<Void, any Error>) -> Void)

        func resume(with result: Result<Void, any Error>) {
            switch self {
            case .continuation(let continuation): continuation.resume(with: result)
            case .callback(let callback): callback(result)
            }
        }

        func resume(throwing error: any Error) {
            resume(with: .failure(error))
        }
    }

    /// An operation waiting for the broker's acknowledgement of message id `mid`.
    struct Waiter<Continuation> {
        var token: UInt64
        var what: String
        var qos: MQTTQoS
        var continuation: Continuation
    }

    /// What a callback reported for a message id before the caller registered for it.
    enum EarlyResult {
        case published(reasonCode: Int32)
        case subscribed(granted: Int32)
        case unsubscribed
    }

    /// How severe a line of libmosquitto's log is.
    enum LogSeverity: Sendable {
        case error
        case warning
        case other
    }

    struct State {
        var status: Status = .idle
        var hasConnected = false
        var connectContinuation: CheckedContinuation<Void, any Error>?
        var publishes: [Int32: Waiter<PublishContinuation>] = [:]
        var subscribes: [Int32: Waiter<SubscribeContinuation>] = [:]
        var unsubscribes: [Int32: Waiter<UnsubscribeContinuation>] = [:]
        var early: [Int32: EarlyResult] = [:]
        /// Message ids whose acknowledgement nobody waits for (cancelled operations, resubscriptions),
        /// and whether that acknowledgement survives a reconnect (only QoS 1/2 publishes are resent).
        var ignored: [Int32: Bool] = [:]
        /// Tokens of operations cancelled before they were registered.
        var cancelledTokens: Set<UInt64> = []
        var tokenToMid: [UInt64: Int32] = [:]
        var nextToken: UInt64 = 1
        /// Subscriptions to restore after a reconnect to a broker that kept no session.
        var subscriptions: [String: MQTTSubscribeOptions] = [:]
        var messageListeners: [UInt64: AsyncStream<MQTTMessage>.Continuation] = [:]
        /// Called for every message on libmosquitto's network thread, before the listeners.
        var messageHandler: (@Sendable (MQTTMessage) -> Void)?
        var eventListeners: [UInt64: AsyncStream<MQTTConnectionEvent>.Continuation] = [:]
        var nextListener: UInt64 = 1
        /// The last warning or error libmosquitto logged (TLS failures are only explained there).
        var lastLoggedError: String?
        /// Makes the Will of each connection (see `MQTTClient.setWillProvider`).
        var willProvider: (@Sendable (UInt64) -> MQTTConfiguration.Will?)?
        /// The number of the connection the Will now set belongs to.
        var willConnection: UInt64 = 0
        /// The number of the connection established last.
        var connectionNumber: UInt64 = 0
    }

    /// Sets the Will of the next connection from the provider, if there is one (before the first connect, and on
    /// the network thread after a lost connection, before libmosquitto reconnects).
    func prepareNextWill() throws {
        let next = state.withLock { state -> (UInt64, @Sendable (UInt64) -> MQTTConfiguration.Will?)? in
            guard let provider = state.willProvider else { return nil }
            state.willConnection += 1
            return (state.willConnection, provider)
        }
        guard let (number, provider) = next else { return }
        try handle.setWill(provider(number), protocolVersion: protocolVersion)
    }

    let state = Mutex(State())
    /// Signalled when libmosquitto reports the disconnect that shutdown asked for.
    let disconnected = DispatchSemaphore(value: 0)
    let logger: Logger
    let endpoint: String
    let host: String
    let port: Int
    /// The libmosquitto client this core belongs to: needed to resubscribe from the connect callback and to set each Will.
    let handle: MosquittoHandle

    let protocolVersion: MQTTProtocolVersion

    init(handle: MosquittoHandle, host: String, port: Int, protocolVersion: MQTTProtocolVersion, logger: Logger) {
        self.handle = handle
        self.protocolVersion = protocolVersion
        self.host = host
        self.port = port
        self.endpoint = "\(host):\(port)"
        self.logger = logger
    }

    // MARK: - Tokens and registration

    func makeToken() -> UInt64 {
        state.withLock { state in
            defer { state.nextToken += 1 }
            return state.nextToken
        }
    }

    /// Registers a publish for `mid`, or completes it at once if the acknowledgement already arrived
    /// or the caller was cancelled meanwhile.
    func registerPublish(mid: Int32, token: UInt64, topic: String, qos: MQTTQoS, continuation: PublishContinuation) {
        let outcome: Result<Void, any Error>? = state.withLock { state in
            if state.cancelledTokens.remove(token) != nil { return .failure(CancellationError()) }
            if state.status == .shutDown { return .failure(Self.shutdownError) }
            if case .published(let reasonCode)? = state.early.removeValue(forKey: mid) {
                return MQTTError.publishResult(reasonCode: reasonCode, topic: topic)
            }
            state.publishes[mid] = Waiter(token: token, what: topic, qos: qos, continuation: continuation)
            state.tokenToMid[token] = mid
            return nil
        }
        if let outcome { continuation.resume(with: outcome) }
    }

    func registerSubscribe(mid: Int32, token: UInt64, filter: String, continuation: SubscribeContinuation) {
        let outcome: Result<MQTTQoS, any Error>? = state.withLock { state in
            if state.cancelledTokens.remove(token) != nil { return .failure(CancellationError()) }
            if state.status == .shutDown { return .failure(Self.shutdownError) }
            if case .subscribed(let granted)? = state.early.removeValue(forKey: mid) {
                return MQTTError.subscribeResult(granted: granted, filter: filter)
            }
            state.subscribes[mid] = Waiter(token: token, what: filter, qos: .atLeastOnce, continuation: continuation)
            state.tokenToMid[token] = mid
            return nil
        }
        if let outcome { continuation.resume(with: outcome) }
    }

    func registerUnsubscribe(mid: Int32, token: UInt64, filter: String, continuation: UnsubscribeContinuation) {
        let outcome: Result<Void, any Error>? = state.withLock { state in
            if state.cancelledTokens.remove(token) != nil { return .failure(CancellationError()) }
            if state.status == .shutDown { return .failure(Self.shutdownError) }
            if case .unsubscribed? = state.early.removeValue(forKey: mid) { return .success(()) }
            state.unsubscribes[mid] = Waiter(token: token, what: filter, qos: .atLeastOnce, continuation: continuation)
            state.tokenToMid[token] = mid
            return nil
        }
        if let outcome { continuation.resume(with: outcome) }
    }

    /// Cancels the operation with `token`: its caller gets a `CancellationError` (the packet may still reach the broker).
    func cancel(token: UInt64) {
        let resume: (() -> Void)? = state.withLock { state in
            guard let mid = state.tokenToMid.removeValue(forKey: token) else {
                state.cancelledTokens.insert(token)
                return nil
            }
            if let waiter = state.publishes.removeValue(forKey: mid) {
                state.ignored[mid] = waiter.qos != .atMostOnce
                return { waiter.continuation.resume(throwing: CancellationError()) }
            }
            if let waiter = state.subscribes.removeValue(forKey: mid) {
                state.ignored[mid] = false
                return { waiter.continuation.resume(throwing: CancellationError()) }
            }
            if let waiter = state.unsubscribes.removeValue(forKey: mid) {
                state.ignored[mid] = false
                return { waiter.continuation.resume(throwing: CancellationError()) }
            }
            return nil
        }
        resume?()
    }

    /// Forgets a cancellation mark for an operation that never reached registration (it failed synchronously).
    func forget(token: UInt64) {
        state.withLock { _ = $0.cancelledTokens.remove(token) }
    }

    // MARK: - Callbacks from libmosquitto's network thread

    func didConnect(reasonCode: Int32, flags: Int32) {
        let sessionPresent = flags & 1 == 1
        let error = reasonCode == 0 ? nil : MQTTError.connack(reasonCode, host: host, port: port)
        let (event, connectWaiter, listeners, toResubscribe) = state.withLock { state in
            var event = MQTTConnectionEvent.disconnected(error ?? ClientCore.shutdownError)
            var toResubscribe: [(String, MQTTSubscribeOptions)] = []
            if error == nil {
                let reconnect = state.hasConnected
                state.hasConnected = true
                state.connectionNumber = max(state.willConnection, 1)
                state.status = .connected
                event = .connected(sessionPresent: sessionPresent, reconnect: reconnect)
                if reconnect && !sessionPresent {
                    toResubscribe = state.subscriptions.sorted { $0.key < $1.key }
                }
            }
            return (event, state.connectContinuation.take(), Array(state.eventListeners.values), toResubscribe)
        }
        if let connectWaiter {
            if let error { connectWaiter.resume(throwing: error) } else { connectWaiter.resume() }
        }
        for listener in listeners { listener.yield(event) }
        if !toResubscribe.isEmpty {
            // Subscribing from a callback is allowed (only destroy, loop_stop and loop are not).
            let mids = toResubscribe.compactMap { filter, options in try? handle.subscribe(filter, options: options) }
            // Their SUBACKs arrive on this very thread, after this callback returns.
            state.withLock { state in
                for mid in mids { state.ignored[mid] = false }
            }
            logger.info("Restored subscriptions after reconnect", metadata: ["mqtt.broker": "\(endpoint)", "mqtt.subscriptions": "\(mids.count)"])
            for listener in listeners { listener.yield(.resubscribed(count: mids.count)) }
        }
    }

    func didDisconnect(_ code: MosquittoReturnCode) {
        let lost = MQTTError(.connectionLost, "The connection to \(endpoint) was lost before the broker answered; subscriptions are restored on reconnect")
        let (error, shuttingDown, connectWaiter, subscribes, unsubscribes, publishes, listeners) = state.withLock { state in
            let error = code.disconnectError(endpoint: endpoint, hasConnected: state.hasConnected, logged: state.lastLoggedError)
            if state.status != .shutDown { state.status = .disconnected }
            // SUBSCRIBE/UNSUBSCRIBE packets and QoS 0 publishes are not resent after a reconnect.
            let subscribes = Array(state.subscribes.values)
            let unsubscribes = Array(state.unsubscribes.values)
            let publishes = state.publishes.filter { $0.value.qos == .atMostOnce }
            state.subscribes = [:]
            state.unsubscribes = [:]
            for mid in publishes.keys { state.publishes[mid] = nil }
            for token in subscribes.map(\.token) + unsubscribes.map(\.token) + publishes.values.map(\.token) {
                state.tokenToMid[token] = nil
            }
            state.ignored = state.ignored.filter { $0.value }
            return (
                error, state.status == .shutDown, state.connectContinuation.take(), subscribes, unsubscribes,
                Array(publishes.values), Array(state.eventListeners.values)
            )
        }
        connectWaiter?.resume(throwing: error)
        for waiter in subscribes { waiter.continuation.resume(throwing: lost) }
        for waiter in unsubscribes { waiter.continuation.resume(throwing: lost) }
        for waiter in publishes { waiter.continuation.resume(throwing: lost) }
        if shuttingDown {
            disconnected.signal()
        } else {
            do {
                try prepareNextWill()
            } catch {
                logger.error("Could not set the Will of the next connection", metadata: ["mqtt.broker": "\(endpoint)", "mqtt.error": "\(error)"])
            }
            logger.info("Disconnected from the MQTT broker", metadata: ["mqtt.broker": "\(endpoint)", "mqtt.error": "\(error)"])
            for listener in listeners { listener.yield(.disconnected(error)) }
        }
    }

    func didPublish(mid: Int32, reasonCode: Int32) {
        let resume: (() -> Void)? = state.withLock { state in
            if state.ignored.removeValue(forKey: mid) != nil { return nil }
            guard let waiter = state.publishes.removeValue(forKey: mid) else {
                state.early[mid] = .published(reasonCode: reasonCode)
                return nil
            }
            state.tokenToMid[waiter.token] = nil
            let result = MQTTError.publishResult(reasonCode: reasonCode, topic: waiter.what)
            return { waiter.continuation.resume(with: result) }
        }
        resume?()
    }

    func didSubscribe(mid: Int32, granted: Int32) {
        let resume: (() -> Void)? = state.withLock { state in
            if state.ignored.removeValue(forKey: mid) != nil { return nil }
            guard let waiter = state.subscribes.removeValue(forKey: mid) else {
                state.early[mid] = .subscribed(granted: granted)
                return nil
            }
            state.tokenToMid[waiter.token] = nil
            let result = MQTTError.subscribeResult(granted: granted, filter: waiter.what)
            return { waiter.continuation.resume(with: result) }
        }
        resume?()
    }

    func didUnsubscribe(mid: Int32) {
        let resume: (() -> Void)? = state.withLock { state in
            if state.ignored.removeValue(forKey: mid) != nil { return nil }
            guard let waiter = state.unsubscribes.removeValue(forKey: mid) else {
                state.early[mid] = .unsubscribed
                return nil
            }
            state.tokenToMid[waiter.token] = nil
            return { waiter.continuation.resume() }
        }
        resume?()
    }

    func didReceive(_ message: MQTTMessage) {
        let (handler, listeners) = state.withLock { state in
            (state.messageHandler, state.messageListeners.isEmpty ? [] : Array(state.messageListeners.values))
        }
        handler?(message)
        for listener in listeners { listener.yield(message) }
    }

    func didLog(_ severity: LogSeverity, text: String) {
        if severity != .other {
            // A TLS failure during the first connect ends libmosquitto's network thread without a disconnect
            // callback: the log line is the only news of it.
            let isTLSFailure = severity == .error && (text.contains("OpenSSL") || text.contains("TLS"))
            let connectWaiter = state.withLock { state in
                state.lastLoggedError = text
                return isTLSFailure && state.status == .connecting ? state.connectContinuation.take() : nil
            }
            connectWaiter?.resume(throwing: MQTTError(.tlsFailure, "The TLS handshake with \(endpoint) failed: \(text); check the CA file, the client certificate and that the broker's certificate names this host"))
            logger.debug("libmosquitto: \(text)", metadata: ["mqtt.broker": "\(endpoint)"])
        } else {
            logger.trace("libmosquitto: \(text)", metadata: ["mqtt.broker": "\(endpoint)"])
        }
    }

    // MARK: - Shutdown

    /// Marks the client shut down and fails everything pending. Returns `false` if it already was.
    func markShutDown() -> Bool {
        let taken = state.withLock { state -> State? in
            guard state.status != .shutDown else { return nil }
            let taken = state
            state.status = .shutDown
            state.connectContinuation = nil
            state.publishes = [:]
            state.subscribes = [:]
            state.unsubscribes = [:]
            state.messageListeners = [:]
            state.messageHandler = nil
            state.eventListeners = [:]
            state.tokenToMid = [:]
            state.early = [:]
            return taken
        }
        guard let taken else { return false }
        let error = Self.shutdownError
        taken.connectContinuation?.resume(throwing: error)
        for waiter in taken.publishes.values { waiter.continuation.resume(throwing: error) }
        for waiter in taken.subscribes.values { waiter.continuation.resume(throwing: error) }
        for waiter in taken.unsubscribes.values { waiter.continuation.resume(throwing: error) }
        for listener in taken.messageListeners.values { listener.finish() }
        for listener in taken.eventListeners.values { listener.finish() }
        return true
    }

    static let shutdownError = MQTTError(.shutdown, "The MQTT client was shut down")
}
