import CMosquitto
import Foundation

extension MQTTError {
    /// The error for a libmosquitto return code of an operation (`what`), with the last error libmosquitto logged.
    static func mosquitto(_ rc: Int32, _ what: String, errno savedErrno: Int32 = 0, logged: String? = nil) -> MQTTError {
        let text = String(cString: mosquitto_strerror(rc))
        let detail = logged.map { " (\($0))" } ?? ""
        switch rc {
        case MOSQ_ERR_NO_CONN.rawValue:
            return MQTTError(.notConnected, "Cannot \(what): the client is not connected to the broker; connect() first or wait for the reconnect")
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
}
