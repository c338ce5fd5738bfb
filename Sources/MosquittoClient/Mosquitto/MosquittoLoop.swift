import CMosquitto
import Foundation
import Synchronization

/// The thread of one client that drives libmosquitto (instead of `mosquitto_loop_start`'s) and runs Swift jobs.
///
/// It `poll()`s the client's socket and an eventfd of its own, and in each round reads (`mosquitto_loop_read`, which
/// runs the callbacks), runs the jobs enqueued on it as a `TaskExecutor`, writes what is queued
/// (`mosquitto_loop_write`) and keeps the connection alive (`mosquitto_loop_misc`, at least every second). A task that
/// a callback resumes (a message yielded to a stream, an acknowledgement's ``Completion``) therefore runs on this
/// thread right after the callback, without a wake-up, and what it publishes is written at once. After a lost
/// connection it reconnects with `mosquitto_reconnect`, waiting as `mosquitto_loop_forever` does (the initial delay
/// times the square of the attempt, at most the maximum delay; counted again from the first after a CONNACK), and
/// runs jobs while it waits.
///
/// Writes from other threads: without TLS the client is left in libmosquitto's non-threaded mode, in which a publish
/// (or subscribe) made outside a callback writes its packet at once under libmosquitto's mutexes; one queued while
/// this thread is inside a callback is written by this thread after it (``afterOperation()`` wakes it if needed).
/// With TLS, OpenSSL does not allow one thread to write a connection while another reads it: the client is marked
/// threaded (`mosquitto_threaded_set`), every packet is queued, and this thread writes them all. The DISCONNECT of
/// shutdown is always sent from this thread, which is the only one that closes the socket.
///
/// Lifetime: the thread starts with the client and holds the handle until ``stop(grace:)``; the blocking connect of
/// `MQTTClient.connect()` holds it too while it runs (``connect(_:)``). The last of them to let go destroys the handle,
/// so a thread stuck in a blocking reconnect is abandoned by shutdown and frees the client itself when it returns.
/// Jobs enqueued after the thread ended run on the global concurrent executor.
final class MosquittoLoop: TaskExecutor, @unchecked Sendable {
    // @unchecked: `shared` is a Mutex; `phase`, `reconnectAttempts` and `lastMisc` are only touched by the loop thread.

    let handle: MosquittoHandle
    let core: ClientCore
    private let wakeFD: Int32
    private let initialDelay: UInt32
    private let maximumDelay: UInt32
    /// `pthread_self()` of the loop thread (0 until it runs).
    private let threadID = Atomic<UInt>(0)
    /// Signalled once the handle is destroyed.
    private let destroyed = DispatchSemaphore(value: 0)
    private let shared = Mutex(Shared())
    /// CONNACKs with success since the last lost connection (reset to 0 by the connect callback, on the loop thread).
    private let reconnectAttempts = Atomic<UInt32>(0)

    private struct Shared {
        var jobs: [UnownedJob] = []
        /// The loop thread is in (or about to enter) `poll()` and must be woken through the eventfd.
        var sleeping = false
        /// A wake-up was written and not read yet.
        var woken = false
        /// `start()` was called: the connect opened the socket.
        var started = false
        /// When ``stop(grace:)`` was called, the time by which the DISCONNECT must have gone out.
        var stopDeadline: ContinuousClock.Instant?
        /// The loop thread and a running connect each hold the handle.
        var holders = 1
        /// The loop thread ended: jobs go to the global executor.
        var ended = false
    }

    private enum Phase {
        /// Before the first connect opened the socket.
        case idle
        case connected
        /// Waiting to reconnect.
        case waiting(until: ContinuousClock.Instant)
        /// After an error that `mosquitto_loop_forever` would not reconnect after: only jobs run.
        case dormant
    }

    private var phase = Phase.idle
    private var disconnectSent = false

    /// Makes the thread for `handle` (configured, not yet attached) and starts it; the callbacks are installed with
    /// `core` as their target.
    init(handle: MosquittoHandle, core: ClientCore, configuration: MQTTConfiguration) throws(MQTTError) {
        self.handle = handle
        self.core = core
        self.initialDelay = configuration.reconnect.initialDelay.mqttSeconds
        self.maximumDelay = configuration.reconnect.maximumDelay.mqttSeconds
        let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else {
            throw MQTTError(.invalidConfiguration, "Could not create the eventfd of the client's thread (errno \(errno))")
        }
        self.wakeFD = fd
        if configuration.tls != nil {
            // Only this thread reads and writes a TLS connection (see the type's documentation).
            mosquitto_threaded_set(handle.pointer, true)
        }
        handle.attach(self)
        Thread { [self] in run() }.start()
    }

    // MARK: - Control

    /// Runs the blocking connect of `body` (on the caller's thread) while holding the handle, so that a shutdown in
    /// the meantime does not destroy it under the connect; `nil` without connecting if the client is stopping.
    func connect<T>(_ body: () -> T) -> T? {
        let admitted = shared.withLock { state in
            guard state.stopDeadline == nil else { return false }
            state.holders += 1
            return true
        }
        guard admitted else { return nil }
        defer { letGo() }
        return body()
    }

    /// Tells the thread that the first connect opened the socket: it reads and writes it from now on.
    func start() throws(MQTTError) {
        let started = shared.withLock { state in
            guard state.stopDeadline == nil else { return false }
            state.started = true
            return true
        }
        guard started else { throw ClientCore.shutdownError }
        wake()
    }

    /// Asks the thread to send DISCONNECT (if connected), to wait at most `grace` for it to go out, and to end; it
    /// then destroys the handle (or the connect holding it does when it returns). Returns at once.
    func stop(grace: Duration) {
        let first = shared.withLock { state in
            guard state.stopDeadline == nil else { return false }
            state.stopDeadline = .now + grace
            return true
        }
        if first { wake() }
    }

    /// Waits at most `timeout` for the handle to be destroyed; whether it was.
    func waitUntilDestroyed(timeout: Duration) -> Bool {
        let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        guard destroyed.wait(timeout: .now() + .nanoseconds(Int(clamping: nanoseconds))) == .success else { return false }
        destroyed.signal()
        return true
    }

    /// Called after a publish, subscribe or unsubscribe from any thread: if its packet is still queued (it was made
    /// while the loop thread ran a callback, or the connection is TLS), wakes the loop thread to write it.
    func afterOperation() {
        guard !isLoopThread, mosquitto_want_write(handle.pointer) else { return }
        wake()
    }

    /// Whether the caller runs on the loop thread.
    var isLoopThread: Bool {
        threadID.load(ordering: .acquiring) == UInt(pthread_self())
    }

    /// The connect callback (on the loop thread): a CONNACK with success counts the reconnect delays from the first.
    func didConnect(reasonCode: Int32) {
        if reasonCode == 0 { reconnectAttempts.store(0, ordering: .relaxed) }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    private func letGo() {
        let last = shared.withLock { state in
            state.holders -= 1
            return state.holders == 0
        }
        guard last else { return }
        core.endMessageDelivery()
        handle.destroy(releasing: self)
        close(wakeFD)
        destroyed.signal()
    }

    // MARK: - TaskExecutor

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let onLoop = isLoopThread
        let signal = shared.withLock { state -> Bool? in
            guard !state.ended else { return nil }
            state.jobs.append(job)
            guard state.sleeping, !state.woken, !onLoop else { return false }
            state.woken = true
            return true
        }
        switch signal {
        case nil: globalConcurrentExecutor.enqueue(job)
        case true?: wake()
        case false?: break
        }
    }

    /// Runs the jobs enqueued so far, and those they enqueue, for a few rounds; whether jobs are left.
    private func runJobs() -> Bool {
        var batch: [UnownedJob] = []
        for _ in 0..<8 {
            shared.withLock { state in swap(&batch, &state.jobs) }
            if batch.isEmpty { return false }
            let executor = asUnownedTaskExecutor()
            for job in batch { job.runSynchronously(on: executor) }
            batch.removeAll(keepingCapacity: true)
        }
        return shared.withLock { !$0.jobs.isEmpty }
    }

    // MARK: - The loop

    private func run() {
        threadID.store(UInt(pthread_self()), ordering: .releasing)
        // (Named from the thread itself: Foundation on Linux names the system thread only then.)
        Thread.current.name = "mqtt-loop"
        var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0), pollfd(fd: -1, events: 0, revents: 0)]
        var jobsLeft = false
        var lastMisc = ContinuousClock.now
        while true {
            let (started, stopDeadline) = shared.withLock { ($0.started, $0.stopDeadline) }
            if case .idle = phase, started { phase = .connected }
            if let stopDeadline, !stopping(deadline: stopDeadline) { break }

            // Wait for the socket, the eventfd, a reconnect or the keepalive.
            let socket: Int32
            var timeout: Int32 = 1000
            switch phase {
            case .connected:
                socket = mosquitto_socket(handle.pointer)
                fds[1] = pollfd(
                    fd: socket, events: Int16(POLLIN) | (mosquitto_want_write(handle.pointer) ? Int16(POLLOUT) : 0), revents: 0)
            case .waiting(let until):
                socket = -1
                timeout = milliseconds(until: until)
            case .idle, .dormant:
                socket = -1
            }
            if socket < 0 { fds[1] = pollfd(fd: -1, events: 0, revents: 0) }
            if let stopDeadline { timeout = min(timeout, milliseconds(until: stopDeadline)) }
            if jobsLeft { timeout = 0 }
            let sleeps =
                timeout != 0
                && shared.withLock { state in
                    guard state.jobs.isEmpty else { return false }
                    state.sleeping = true
                    return true
                }
            fds[0].revents = 0
            let count = poll(&fds, 2, sleeps ? timeout : 0)
            if sleeps || fds[0].revents != 0 {
                if fds[0].revents & Int16(POLLIN) != 0 {
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                }
                shared.withLock { state in
                    state.sleeping = false
                    state.woken = false
                }
            }

            // Read (the callbacks run), then run the jobs they resumed, then write what they and others queued.
            if case .connected = phase, count > 0, fds[1].revents != 0 {
                // (POLLNVAL too: the read then reports the broken socket instead of the loop spinning on it.)
                let readable = fds[1].revents & Int16(POLLIN | POLLERR | POLLHUP | POLLNVAL) != 0
                if readable {
                    let rc = mosquitto_loop_read(handle.pointer, 1)
                    if rc != MOSQ_ERR_SUCCESS.rawValue || mosquitto_socket(handle.pointer) < 0 { lost(rc, errno: errno) }
                }
            }
            jobsLeft = runJobs()
            if case .connected = phase, mosquitto_want_write(handle.pointer) {
                let rc = mosquitto_loop_write(handle.pointer, 1)
                if rc != MOSQ_ERR_SUCCESS.rawValue || mosquitto_socket(handle.pointer) < 0 { lost(rc, errno: errno) }
            }
            let now = ContinuousClock.now
            switch phase {
            case .connected where now - lastMisc >= .milliseconds(250):
                lastMisc = now
                let rc = mosquitto_loop_misc(handle.pointer)
                if rc != MOSQ_ERR_SUCCESS.rawValue || mosquitto_socket(handle.pointer) < 0 { lost(rc, errno: errno) }
            case .waiting(let until) where now >= until:
                reconnect()
            default:
                break
            }
        }
        // Ended: later jobs go to the global executor; those left run there too.
        let left = shared.withLock { state in
            state.ended = true
            defer { state.jobs = [] }
            return state.jobs
        }
        for job in left { globalConcurrentExecutor.enqueue(job) }
        letGo()
    }

    /// Whether the loop goes on while stopping: sends DISCONNECT once if connected, and goes on until it is out (the
    /// disconnect callback ran and the socket is closed) or the deadline passed.
    private func stopping(deadline: ContinuousClock.Instant) -> Bool {
        guard case .connected = phase, mosquitto_socket(handle.pointer) >= 0 else { return false }
        if !disconnectSent {
            disconnectSent = true
            // Written at once here (or by the next write): the disconnect callback runs when it is out.
            guard handle.disconnect() else { return false }
            if mosquitto_socket(handle.pointer) < 0 { return false }
        }
        return ContinuousClock.now < deadline
    }

    /// After `mosquitto_loop_read`/`_write`/`_misc` reported `rc` (the socket is closed and the disconnect callback
    /// ran, except for a TLS handshake failure): wait to reconnect, or stay dormant after an error that
    /// `mosquitto_loop_forever` ends on.
    private func lost(_ rc: Int32, errno savedErrno: Int32) {
        guard case .connected = phase else { return }
        if disconnectSent {
            phase = .dormant
            return
        }
        let fatal: [mosq_err_t] = [
            MOSQ_ERR_NOMEM, MOSQ_ERR_PROTOCOL, MOSQ_ERR_INVAL, MOSQ_ERR_NOT_FOUND, MOSQ_ERR_TLS, MOSQ_ERR_PAYLOAD_SIZE,
            MOSQ_ERR_NOT_SUPPORTED, MOSQ_ERR_AUTH, MOSQ_ERR_ACL_DENIED, MOSQ_ERR_UNKNOWN, MOSQ_ERR_EAI, MOSQ_ERR_PROXY,
        ]
        if fatal.contains(where: { $0.rawValue == rc }) || savedErrno == EPROTO {
            phase = .dormant
        } else {
            scheduleReconnect()
        }
    }

    /// The next wait before a reconnect, as `mosquitto_loop_forever` computes it with exponential backoff.
    private func scheduleReconnect() {
        let attempts = reconnectAttempts.load(ordering: .relaxed)
        var delay = UInt64(initialDelay)
        if maximumDelay > initialDelay { delay = UInt64(initialDelay) * UInt64(attempts + 1) * UInt64(attempts + 1) }
        if delay > UInt64(maximumDelay) {
            delay = UInt64(maximumDelay)
        } else {
            reconnectAttempts.store(attempts + 1, ordering: .relaxed)
        }
        phase = .waiting(until: .now + .seconds(Int64(delay)))
    }

    /// Reconnects (blocking: resolves the host and opens the connection; the CONNACK comes later, read by the loop).
    private func reconnect() {
        if mosquitto_reconnect(handle.pointer) == MOSQ_ERR_SUCCESS.rawValue {
            phase = .connected
        } else {
            scheduleReconnect()
        }
    }

    private func milliseconds(until instant: ContinuousClock.Instant) -> Int32 {
        let left = instant - .now
        guard left > .zero else { return 0 }
        let milliseconds = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1
        return Int32(clamping: milliseconds)
    }
}
