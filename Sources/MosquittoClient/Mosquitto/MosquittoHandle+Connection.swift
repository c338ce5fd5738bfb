import CMosquitto
import Foundation

extension MosquittoHandle {
    /// Resolves the broker's host and opens the TCP (and TLS) connection, sending CONNECT with the session expiry of
    /// `configuration` (MQTT 5). Blocks: call it on a thread of its own. The CONNACK arrives later, read by the loop
    /// thread (``MosquittoLoop/start()``). Returns why it failed, or `nil`.
    func connect(_ configuration: MQTTConfiguration) -> MosquittoReturnCode? {
        let properties = MosquittoPropertyList()
        if configuration.protocolVersion == .v5, configuration.sessionExpiry.mqttSeconds > 0 {
            try? properties.add(Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue), uint32: configuration.sessionExpiry.mqttSeconds)
        }
        errno = 0
        let rc = mosquitto_connect_bind_v5(
            pointer, configuration.host, Int32(configuration.port), Int32(clamping: configuration.keepAlive.mqttSeconds), nil,
            properties.pointer)
        return rc == MOSQ_ERR_SUCCESS.rawValue ? nil : MosquittoReturnCode(rc, errno: errno)
    }

    /// Sends DISCONNECT (reason code 0: the broker does not publish the Will); `false` if libmosquitto refused it
    /// (not connected). The disconnect callback reports when it was sent. Only on the loop thread.
    func disconnect() -> Bool {
        mosquitto_disconnect_v5(pointer, 0, nil) == MOSQ_ERR_SUCCESS.rawValue
    }
}
