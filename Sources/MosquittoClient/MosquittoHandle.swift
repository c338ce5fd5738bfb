import CMosquitto
import Foundation
import Synchronization

/// A `struct mosquitto *` shared between Swift tasks and libmosquitto's network thread.
///
/// `@unchecked Sendable` because the pointer is only used in ways libmosquitto makes thread safe: once
/// `mosquitto_loop_start` runs the network thread, `mosquitto_publish_v5`, `mosquitto_subscribe_v5`,
/// `mosquitto_unsubscribe_v5` and `mosquitto_disconnect_v5` may be called from any thread (they lock
/// libmosquitto's internal mutexes and wake the network thread). Setup calls happen before the network
/// thread starts, and `mosquitto_loop_stop`/`mosquitto_destroy` only in ``MQTTClient``'s teardown,
/// never from a callback.
struct MosquittoHandle: @unchecked Sendable {
    let pointer: OpaquePointer

    func publish(mid: inout Int32, topic: String, payload: Data, qos: MQTTQoS, retain: Bool, properties: OpaquePointer?) -> Int32 {
        payload.withUnsafeBytes { buffer in
            mosquitto_publish_v5(pointer, &mid, topic, Int32(buffer.count), buffer.baseAddress, qos.rawValue, retain, properties)
        }
    }

    func subscribe(filter: String, options: MQTTSubscribeOptions, mid: UnsafeMutablePointer<Int32>?) -> Int32 {
        mosquitto_subscribe_v5(pointer, mid, filter, options.qos.rawValue, options.mosquittoFlags, nil)
    }

    func unsubscribe(filter: String, mid: UnsafeMutablePointer<Int32>?) -> Int32 {
        mosquitto_unsubscribe_v5(pointer, mid, filter, nil)
    }

    /// Sets (or, with `nil`, clears) the Will sent with the next CONNECT. Safe before the network thread starts and
    /// from its callbacks (the reconnect that reads it runs on that thread after the callback returns).
    func setWill(_ will: MQTTConfiguration.Will?, protocolVersion: MQTTProtocolVersion) throws {
        func check(_ rc: Int32, _ what: String) throws(MQTTError) {
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                throw MQTTError(.invalidConfiguration, "Could not \(what): \(String(cString: mosquitto_strerror(rc)))")
            }
        }
        guard let will else {
            try check(mosquitto_will_clear(pointer), "clear the Will")
            return
        }
        let properties = protocolVersion == .v5
            ? try MosquittoPropertyList(publish: will.properties, willDelay: will.delayInterval) : MosquittoPropertyList()
        let rc = will.payload.withUnsafeBytes { buffer in
            mosquitto_will_set_v5(pointer, will.topic, Int32(buffer.count), buffer.baseAddress, will.qos.rawValue, will.retain, properties.pointer)
        }
        // will_set_v5 takes ownership of the properties only on success.
        if rc == MOSQ_ERR_SUCCESS.rawValue { _ = properties.release() }
        try check(rc, "set the Will on '\(will.topic)'")
    }
}

extension MQTTSubscribeOptions {
    /// The `options` argument of `mosquitto_subscribe_v5` (MQTT 5 subscription option bits above the QoS).
    var mosquittoFlags: Int32 {
        var flags: Int32 = 0
        if noLocal { flags |= 0x04 }
        if retainAsPublished { flags |= 0x08 }
        flags |= retainHandling.rawValue << 4
        return flags
    }
}

/// Runs a blocking C call on a thread of its own, so that it never blocks Swift's cooperative pool.
func runOnDedicatedThread<T: Sendable>(name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread {
            continuation.resume(returning: body())
        }
        thread.name = name
        thread.start()
    }
}

/// Resumes a continuation exactly once, from whichever of several racing sources comes first.
final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, Never>?>

    init(_ continuation: CheckedContinuation<T, Never>) {
        self.continuation = Mutex(continuation)
    }

    func resume(_ value: T) {
        continuation.withLock { $0.take() }?.resume(returning: value)
    }
}

/// Waits for `body` (run on a dedicated thread) at most `timeout`; returns `nil` if it did not finish in time.
/// The thread is abandoned, not killed, when the time runs out.
func runOnDedicatedThread<T: Sendable>(name: String, timeout: Duration, _ body: @escaping @Sendable () -> T) async -> T? {
    await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
        let once = ResumeOnce(continuation)
        let thread = Thread { once.resume(body()) }
        thread.name = name
        thread.start()
        Task {
            try? await Task.sleep(for: timeout)
            once.resume(nil)
        }
    }
}
