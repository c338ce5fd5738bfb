import CMosquitto
import Foundation

/// A libmosquitto return code (`MOSQ_ERR_*`) with the `errno` saved right after the call, for code that must not
/// see libmosquitto's constants: a failed connect, or the reason a disconnect callback reports (0: on request).
struct MosquittoReturnCode: Sendable {
    let rc: Int32
    let errno: Int32

    init(_ rc: Int32, errno: Int32 = 0) {
        self.rc = rc
        self.errno = errno
    }

    /// The error for this code of an operation (`what`), with the last error libmosquitto logged.
    func error(_ what: String, logged: String? = nil) -> MQTTError {
        MQTTError.mosquitto(rc, what, errno: errno, logged: logged)
    }

    /// The error a disconnect callback with this code reports to pending operations' callers and to the events:
    /// on request, lost after a connection (or failed otherwise), or lost before the first CONNACK (usually TLS,
    /// explained only in libmosquitto's log).
    func disconnectError(endpoint: String, hasConnected: Bool, logged: String?) -> MQTTError {
        if rc == 0 {
            return MQTTError(.connectionLost, "Disconnected from the broker at \(endpoint) on request")
        } else if hasConnected || rc != MOSQ_ERR_CONN_LOST.rawValue {
            var mapped = MQTTError.mosquitto(rc, "stay connected to \(endpoint)", logged: logged)
            if mapped.code == .notConnected { mapped.code = .connectionLost }
            return mapped
        } else {
            return logged.map { MQTTError(.tlsFailure, "The connection to \(endpoint) failed during the handshake: \($0)") }
                ?? MQTTError.mosquitto(rc, "connect to \(endpoint)")
        }
    }
}

extension MQTTError {
    /// The error for a libmosquitto return code of an operation (`what`), with the last error libmosquitto logged.
    static func mosquitto(_ rc: Int32, _ what: String, errno savedErrno: Int32 = 0, logged: String? = nil) -> MQTTError {
        let text = String(cString: mosquitto_strerror(rc))
        let detail = logged.map { " (\($0))" } ?? ""
        switch rc {
        case MOSQ_ERR_NO_CONN.rawValue:
            return MQTTError(
                .notConnected, "Cannot \(what): the client is not connected to the broker; connect() first or wait for the reconnect")
        case MOSQ_ERR_CONN_LOST.rawValue, MOSQ_ERR_KEEPALIVE.rawValue:
            return MQTTError(.connectionLost, "Lost the connection to the broker while trying to \(what): \(text)\(detail)")
        case MOSQ_ERR_TLS.rawValue, MOSQ_ERR_TLS_HANDSHAKE.rawValue, MOSQ_ERR_OCSP.rawValue:
            return MQTTError(
                .tlsFailure,
                "TLS failed while trying to \(what)\(detail.isEmpty ? ": \(text)" : detail); check the CA file, the client certificate and that the broker's certificate names this host"
            )
        case MOSQ_ERR_PAYLOAD_SIZE.rawValue, MOSQ_ERR_OVERSIZE_PACKET.rawValue:
            return MQTTError(.payloadTooLarge, "Cannot \(what): the payload is larger than the broker (or MQTT) accepts")
        case MOSQ_ERR_MALFORMED_UTF8.rawValue:
            return MQTTError(.invalidTopic, "Cannot \(what): the topic is not valid UTF-8")
        case MOSQ_ERR_INVAL.rawValue:
            return MQTTError(.invalidTopic, "Cannot \(what): invalid argument (a topic with wildcards, an empty topic, or a bad QoS)")
        case MOSQ_ERR_AUTH.rawValue:
            return MQTTError(.badCredentials, "The broker refused the credentials while trying to \(what)")
        case MOSQ_ERR_ACL_DENIED.rawValue:
            return MQTTError(.publishRefused, "The broker denied access while trying to \(what); check its ACL")
        case MOSQ_ERR_EAI.rawValue, MOSQ_ERR_LOOKUP.rawValue:
            return MQTTError(.brokerUnreachable, "Cannot \(what): the broker's host name could not be resolved\(detail)")
        case MOSQ_ERR_ERRNO.rawValue:
            let reason = savedErrno != 0 ? String(cString: strerror(savedErrno)) : text
            return MQTTError(.brokerUnreachable, "Cannot \(what): \(reason)\(detail). Is the broker running and the URL right?")
        default:
            return MQTTError(.protocolError, "Cannot \(what): \(text)\(detail)", reasonCode: nil)
        }
    }

    /// The error for a refused CONNACK.
    static func connack(_ reasonCode: Int32, host: String, port: Int) -> MQTTError {
        let text = String(cString: mosquitto_reason_string(reasonCode))
        switch reasonCode {
        // MQTT 5: 0x86 bad user name or password, 0x87 not authorised; MQTT 3.1.1: 4 and 5.
        case 0x86, 0x87, 4, 5:
            return MQTTError(
                .badCredentials,
                "The broker at \(host):\(port) refused the connection: \(text). Check the username and password",
                reasonCode: Int(reasonCode)
            )
        default:
            return MQTTError(
                .connectionRefused,
                "The broker at \(host):\(port) refused the connection: \(text)",
                reasonCode: Int(reasonCode)
            )
        }
    }

    /// The outcome of a PUBACK/PUBCOMP reason code: success below 0x80, otherwise the broker's refusal.
    static func publishResult(reasonCode: Int32, topic: String) -> Result<Void, any Error> {
        guard reasonCode >= 0x80 else { return .success(()) }
        let text = String(cString: mosquitto_reason_string(reasonCode))
        let hint = reasonCode == 0x87 ? "; check the broker's ACL for this user" : ""
        return .failure(
            MQTTError(.publishRefused, "The broker refused the publish to '\(topic)': \(text)\(hint)", reasonCode: Int(reasonCode)))
    }

    /// The outcome of a SUBACK's first reason code: the granted QoS, otherwise the broker's refusal.
    static func subscribeResult(granted: Int32, filter: String) -> Result<MQTTQoS, any Error> {
        if let qos = MQTTQoS(rawValue: granted) { return .success(qos) }
        let text = String(cString: mosquitto_reason_string(granted))
        let hint = granted == 0x87 ? "; check the broker's ACL for this user" : ""
        return .failure(
            MQTTError(.subscriptionRefused, "The broker refused the subscription to '\(filter)': \(text)\(hint)", reasonCode: Int(granted)))
    }
}
