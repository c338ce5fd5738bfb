import CMosquitto
import Foundation

extension MosquittoHandle {
    /// Sends (or queues) a PUBLISH and returns its message id, whose acknowledgement
    /// ``ClientCore/didPublish(mid:reasonCode:)`` reports. `properties` are sent only with MQTT 5. With QoS 1/2
    /// libmosquitto keeps the message even while disconnected, or when writing it at once finds the connection broken,
    /// and sends it after the reconnect; with QoS 0 that fails with `.notConnected` or `.connectionLost`.
    func publish(
        _ topic: String, payload: Data, qos: MQTTQoS, retain: Bool, properties: MQTTPublishProperties, protocolVersion: MQTTProtocolVersion
    ) throws -> Int32 {
        let list = protocolVersion == .v5 && !properties.isEmpty ? try MosquittoPropertyList(publish: properties) : nil
        var mid: Int32 = 0
        let rc = payload.withUnsafeBytes { buffer in
            mosquitto_publish_v5(pointer, &mid, topic, Int32(buffer.count), buffer.baseAddress, qos.rawValue, retain, list?.pointer)
        }
        // A QoS 1/2 message is stored before libmosquitto writes it: a write that fails (the connection is lost, the
        // loop thread will notice) leaves it to be resent after the reconnect.
        let kept = [MOSQ_ERR_NO_CONN, MOSQ_ERR_CONN_LOST, MOSQ_ERR_ERRNO].contains { $0.rawValue == rc }
        guard rc == MOSQ_ERR_SUCCESS.rawValue || (kept && qos != .atMostOnce) else {
            throw MQTTError.mosquitto(rc, "publish to '\(topic)'")
        }
        return mid
    }

    /// Queues a SUBSCRIBE and returns its message id (the SUBACK is reported by ``ClientCore/didSubscribe(mid:granted:)``).
    /// Allowed from the loop thread's callbacks.
    func subscribe(_ filter: String, options: MQTTSubscribeOptions) throws(MQTTError) -> Int32 {
        var mid: Int32 = 0
        let rc = mosquitto_subscribe_v5(pointer, &mid, filter, options.qos.rawValue, options.mosquittoFlags, nil)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError.mosquitto(rc, "subscribe to '\(filter)'") }
        return mid
    }

    /// Queues an UNSUBSCRIBE and returns its message id (the UNSUBACK is reported by ``ClientCore/didUnsubscribe(mid:)``).
    func unsubscribe(_ filter: String) throws(MQTTError) -> Int32 {
        var mid: Int32 = 0
        let rc = mosquitto_unsubscribe_v5(pointer, &mid, filter, nil)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError.mosquitto(rc, "unsubscribe from '\(filter)'") }
        return mid
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
