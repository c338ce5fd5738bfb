import AsyncCompletion
import Foundation
import Logging
import Synchronization

/// The mutable heart of an ``MQTTClient``: pending operations, subscriptions, listeners, connection status.
///
/// the client's loop thread calls back into it through the callbacks' userdata pointer (no global
/// registry; see `Mosquitto/MosquittoCallbacks.swift`). Every callback copies what it needs out of
/// libmosquitto's memory, updates the state under one `Mutex`, and resumes the waiting operations'
/// ``Completion``s or yields to streams after releasing it.
final class ClientCore: Sendable {
    enum Status: Sendable {
        case idle
        case connecting
        case connected
        case disconnected
        case shutDown
    }

    /// An operation waiting for the broker's acknowledgement of its message id: what it is about (for errors), its
    /// QoS (for what a lost connection fails) and the completion its caller waits for. An operation whose caller
    /// stopped waiting (cancelled) stays until its acknowledgement or the connection's end: that resumes nobody.
    struct Pending<Value: Sendable> {
        var what: String
        var qos: MQTTQoS
        var completion: Completion<Value>
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
        /// The first connect's outcome, which its caller waits for (see `MQTTClient.connect()`).
        var connecting: Completion<Void>?
        var publishes: [Int32: Pending<Void>] = [:]
        var subscribes: [Int32: Pending<MQTTQoS>] = [:]
        var unsubscribes: [Int32: Pending<Void>] = [:]
        /// Acknowledgements that arrived before their operation was registered (the loop thread can be faster
        /// than the caller of a publish or (un)subscribe, which learns the message id on return).
        var early: [Int32: EarlyResult] = [:]
        /// Subscriptions to restore after a reconnect to a broker that kept no session.
        var subscriptions: [String: MQTTSubscribeOptions] = [:]
        var messageListeners: [UInt64: AsyncStream<MQTTMessage>.Continuation] = [:]
        /// Called for every message on the client's loop thread, before the listeners.
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
    /// the loop thread after a lost connection, before libmosquitto reconnects).
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

    // MARK: - Registration

    /// Registers a publish for `mid` (`completion` gets the acknowledgement), or completes it at once if the
    /// acknowledgement already arrived or the client is shut down.
    func registerPublish(mid: Int32, topic: String, qos: MQTTQoS, completion: Completion<Void>) {
        register(completion, mid: mid, what: topic, qos: qos, in: \.publishes) { early in
            guard case .published(let reasonCode) = early else { return nil }
            return MQTTError.publishResult(reasonCode: reasonCode, topic: topic)
        }
    }

    /// Registers a subscribe for `mid`; `completion` gets the granted QoS or the refusal.
    func registerSubscribe(mid: Int32, filter: String, completion: Completion<MQTTQoS>) {
        register(completion, mid: mid, what: filter, qos: .atLeastOnce, in: \.subscribes) { early in
            guard case .subscribed(let granted) = early else { return nil }
            return MQTTError.subscribeResult(granted: granted, filter: filter)
        }
    }

    /// Registers an unsubscribe for `mid`; `completion` gets the UNSUBACK.
    func registerUnsubscribe(mid: Int32, filter: String, completion: Completion<Void>) {
        register(completion, mid: mid, what: filter, qos: .atLeastOnce, in: \.unsubscribes) { early in
            guard case .unsubscribed = early else { return nil }
            return .success(())
        }
    }

    private func register<Value: Sendable>(
        _ completion: Completion<Value>,
        mid: Int32,
        what: String,
        qos: MQTTQoS,
        in table: WritableKeyPath<State, [Int32: Pending<Value>]>,
        early result: (EarlyResult) -> Result<Value, any Error>?
    ) {
        let outcome: Result<Value, any Error>? = state.withLock { state in
            if state.status == .shutDown { return .failure(Self.shutdownError) }
            if let early = state.early.removeValue(forKey: mid), let outcome = result(early) { return outcome }
            state[keyPath: table][mid] = Pending(what: what, qos: qos, completion: completion)
            return nil
        }
        if let outcome { completion.resume(outcome) }
    }

    // MARK: - Callbacks from the client's loop thread

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
            return (event, state.connecting.take(), Array(state.eventListeners.values), toResubscribe)
        }
        connectWaiter?.resume(error.map { .failure($0) } ?? .success(()))
        for listener in listeners { listener.yield(event) }
        if !toResubscribe.isEmpty {
            // Subscribing from a callback is allowed (only destroy, loop_stop and loop are not).
            let mids = toResubscribe.compactMap { filter, options in (try? handle.subscribe(filter, options: options)).map { ($0, filter) }
            }
            // Their SUBACKs arrive on this very thread, after this callback returns, and resume nobody.
            state.withLock { state in
                for (mid, filter) in mids { state.subscribes[mid] = Pending(what: filter, qos: .atLeastOnce, completion: Completion()) }
            }
            logger.info(
                "Restored subscriptions after reconnect", metadata: ["mqtt.broker": "\(endpoint)", "mqtt.subscriptions": "\(mids.count)"])
            for listener in listeners { listener.yield(.resubscribed(count: mids.count)) }
        }
    }

    func didDisconnect(_ code: MosquittoReturnCode) {
        let lost = MQTTError(
            .connectionLost, "The connection to \(endpoint) was lost before the broker answered; subscriptions are restored on reconnect")
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
            return (
                error, state.status == .shutDown, state.connecting.take(), subscribes, unsubscribes,
                Array(publishes.values), Array(state.eventListeners.values)
            )
        }
        connectWaiter?.resume(throwing: error)
        for pending in subscribes { pending.completion.resume(throwing: lost) }
        for pending in unsubscribes { pending.completion.resume(throwing: lost) }
        for pending in publishes { pending.completion.resume(throwing: lost) }
        if !shuttingDown {
            do {
                try prepareNextWill()
            } catch {
                logger.error(
                    "Could not set the Will of the next connection", metadata: ["mqtt.broker": "\(endpoint)", "mqtt.error": "\(error)"])
            }
            logger.info("Disconnected from the MQTT broker", metadata: ["mqtt.broker": "\(endpoint)", "mqtt.error": "\(error)"])
            for listener in listeners { listener.yield(.disconnected(error)) }
        }
    }

    func didPublish(mid: Int32, reasonCode: Int32) {
        guard let pending = takePending(\.publishes, mid: mid, orRemember: .published(reasonCode: reasonCode)) else { return }
        pending.completion.resume(MQTTError.publishResult(reasonCode: reasonCode, topic: pending.what))
    }

    func didSubscribe(mid: Int32, granted: Int32) {
        guard let pending = takePending(\.subscribes, mid: mid, orRemember: .subscribed(granted: granted)) else { return }
        pending.completion.resume(MQTTError.subscribeResult(granted: granted, filter: pending.what))
    }

    func didUnsubscribe(mid: Int32) {
        takePending(\.unsubscribes, mid: mid, orRemember: .unsubscribed)?.completion.resume(returning: ())
    }

    /// The operation waiting for the acknowledgement of `mid`, taken out of its table; `nil` if it is not registered
    /// yet (the acknowledgement came before the caller learnt the message id), and then `early` is kept for it.
    private func takePending<Value>(
        _ table: WritableKeyPath<State, [Int32: Pending<Value>]>, mid: Int32, orRemember early: EarlyResult
    ) -> Pending<Value>? {
        state.withLock { state in
            guard let pending = state[keyPath: table].removeValue(forKey: mid) else {
                state.early[mid] = early
                return nil
            }
            return pending
        }
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
            // A TLS failure during the first connect makes the loop thread give up the connection without a
            // disconnect callback: the log line is the only news of it.
            let isTLSFailure = severity == .error && (text.contains("OpenSSL") || text.contains("TLS"))
            let connectWaiter = state.withLock { state in
                state.lastLoggedError = text
                return isTLSFailure && state.status == .connecting ? state.connecting.take() : nil
            }
            connectWaiter?.resume(
                throwing: MQTTError(
                    .tlsFailure,
                    "The TLS handshake with \(endpoint) failed: \(text); check the CA file, the client certificate and that the broker's certificate names this host"
                ))
            logger.debug("libmosquitto: \(text)", metadata: ["mqtt.broker": "\(endpoint)"])
        } else {
            logger.trace("libmosquitto: \(text)", metadata: ["mqtt.broker": "\(endpoint)"])
        }
    }

    // MARK: - Shutdown

    /// Marks the client shut down and fails everything pending. Returns `false` if it already was.
    ///
    /// The streams of ``MQTTClient/messages()`` keep receiving until ``endMessageDelivery()``, called once the network
    /// thread stopped: a QoS 1/2 message that arrives before the DISCONNECT goes out is acknowledged by libmosquitto,
    /// so dropping it here would lose it for every session holder (a successor attaching to a persistent session never
    /// gets it again).
    func markShutDown() -> Bool {
        let taken = state.withLock { state -> State? in
            guard state.status != .shutDown else { return nil }
            let taken = state
            state.status = .shutDown
            state.connecting = nil
            state.publishes = [:]
            state.subscribes = [:]
            state.unsubscribes = [:]
            state.messageHandler = nil
            state.eventListeners = [:]
            state.early = [:]
            return taken
        }
        guard let taken else { return false }
        let error = Self.shutdownError
        taken.connecting?.resume(throwing: error)
        for pending in taken.publishes.values { pending.completion.resume(throwing: error) }
        for pending in taken.subscribes.values { pending.completion.resume(throwing: error) }
        for pending in taken.unsubscribes.values { pending.completion.resume(throwing: error) }
        for listener in taken.eventListeners.values { listener.finish() }
        return true
    }

    /// Ends the streams of ``MQTTClient/messages()``, once nothing more can arrive (the loop thread stopped, or was
    /// abandoned). What they buffered is still read by their consumers.
    func endMessageDelivery() {
        let listeners = state.withLock { state in
            defer { state.messageListeners = [:] }
            return Array(state.messageListeners.values)
        }
        for listener in listeners { listener.finish() }
    }

    static let shutdownError = MQTTError(.shutdown, "The MQTT client was shut down")
}
