import CMosquitto
import Foundation

extension MosquittoHandle {
    /// Hands `loop` to libmosquitto as the callbacks' userdata (retained: ``destroy(releasing:)`` releases it right
    /// after `mosquitto_destroy`) and installs the callbacks, which run on the loop's thread (a QoS 0 publish's, on
    /// the thread that wrote it) and call into its core. Before the connect.
    func attach(_ loop: MosquittoLoop) {
        mosquitto_user_data_set(pointer, Unmanaged.passRetained(loop).toOpaque())
        mosquitto_connect_v5_callback_set(pointer) { _, userdata, reasonCode, flags, _ in
            guard let loop = MosquittoLoop.from(userdata) else { return }
            loop.didConnect(reasonCode: reasonCode)
            loop.core.didConnect(reasonCode: reasonCode, flags: flags)
        }
        mosquitto_disconnect_v5_callback_set(pointer) { _, userdata, rc, _ in
            MosquittoLoop.from(userdata)?.core.didDisconnect(MosquittoReturnCode(rc))
        }
        mosquitto_publish_v5_callback_set(pointer) { _, userdata, mid, reasonCode, _ in
            MosquittoLoop.from(userdata)?.core.didPublish(mid: mid, reasonCode: reasonCode)
        }
        mosquitto_subscribe_v5_callback_set(pointer) { _, userdata, mid, count, granted, _ in
            let first = count > 0 ? granted?.pointee ?? 0x80 : 0x80
            MosquittoLoop.from(userdata)?.core.didSubscribe(mid: mid, granted: first)
        }
        mosquitto_unsubscribe_v5_callback_set(pointer) { _, userdata, mid, _ in
            MosquittoLoop.from(userdata)?.core.didUnsubscribe(mid: mid)
        }
        mosquitto_message_v5_callback_set(pointer) { _, userdata, message, properties in
            receive(userdata, message, properties)
        }
        mosquitto_log_callback_set(pointer) { _, userdata, level, text in
            guard let text else { return }
            let severity: ClientCore.LogSeverity =
                level & MOSQ_LOG_ERR != 0 ? .error : level & MOSQ_LOG_WARNING != 0 ? .warning : .other
            MosquittoLoop.from(userdata)?.core.didLog(severity, text: String(cString: text))
        }
    }
}

/// Whether a received payload may be taken over from libmosquitto instead of copied: only with the 2.0
/// series, whose message handling (checked in 2.0.11) frees the payload after the callback only if set.
private let payloadTakeoverIsSafe: Bool = {
    var major: Int32 = 0
    var minor: Int32 = 0
    var revision: Int32 = 0
    mosquitto_lib_version(&major, &minor, &revision)
    return major == 2 && minor == 0
}()

/// The message callback: copies the message (taking its payload over where that is safe) and routes it.
private func receive(
    _ userdata: UnsafeMutableRawPointer?, _ message: UnsafePointer<mosquitto_message>?, _ properties: OpaquePointer?
) {
    guard let core = MosquittoLoop.from(userdata)?.core, let message else { return }
    // libmosquitto frees the message when the callback returns: copy everything now, except the payload,
    // which is taken over (no copy: a handed-off state can be many megabytes). libmosquitto 2.0 allocates
    // it with calloc and frees it after the callback only if it is still set (message__cleanup), so
    // clearing the pointer hands the buffer to Data. QoS 2 messages are stored by libmosquitto after
    // the callback in some versions: their payload is copied, and so is every payload with a libmosquitto
    // other than 2.0.x, whose internals this relies on.
    let m = message.pointee
    let payload: Data
    if m.payloadlen > 0, let bytes = m.payload {
        if m.qos < 2 && payloadTakeoverIsSafe {
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

extension MosquittoLoop {
    /// The loop behind a callback's userdata pointer.
    fileprivate static func from(_ userdata: UnsafeMutableRawPointer?) -> MosquittoLoop? {
        userdata.map { Unmanaged<MosquittoLoop>.fromOpaque($0).takeUnretainedValue() }
    }
}
