import CMosquitto
import Foundation

/// Makes sure `mosquitto_lib_init` runs exactly once per process (it is not thread safe).
enum MosquittoLibrary {
    private static let initialized: Bool = {
        mosquitto_lib_init()
        return true
    }()

    static func initialize() {
        _ = initialized
    }
}

/// A `struct mosquitto *` shared between Swift tasks and the client's loop thread: its lifetime and options here, the
/// connection in `MosquittoHandle+Connection.swift`, publish and (un)subscribe in `MosquittoHandle+Operations.swift`,
/// the callbacks in `MosquittoCallbacks.swift`, the thread that drives it in `MosquittoLoop.swift`.
///
/// `@unchecked Sendable` because the pointer is only used in ways libmosquitto makes thread safe:
/// `mosquitto_publish_v5`, `mosquitto_subscribe_v5` and `mosquitto_unsubscribe_v5` may be called from any thread
/// (they lock libmosquitto's internal mutexes, and write the packet at once or queue it for the loop thread). The
/// loop thread alone reads, writes after a callback, keeps alive, reconnects and disconnects. Setup calls happen before
/// the connect, and `mosquitto_destroy` only once neither the loop thread nor a connect can touch the handle.
struct MosquittoHandle: @unchecked Sendable {
    let pointer: OpaquePointer

    /// Creates libmosquitto's client (initialising the library first).
    init(clientID: String, cleanStart: Bool) throws(MQTTError) {
        MosquittoLibrary.initialize()
        guard let pointer = mosquitto_new(clientID, cleanStart, nil) else {
            throw MQTTError(
                .invalidConfiguration, "libmosquitto could not create a client (out of memory or an invalid client id '\(clientID)')")
        }
        self.pointer = pointer
    }

    /// Frees libmosquitto's client, and then `loop` if ``attach(_:)`` retained it. Only once nothing else can touch
    /// the handle (see ``MosquittoLoop``), never from a callback.
    func destroy(releasing loop: MosquittoLoop?) {
        mosquitto_destroy(pointer)
        if let loop { Unmanaged.passUnretained(loop).release() }
    }

    // MARK: - Options

    /// Applies everything of `configuration` that libmosquitto needs before the first connect: the protocol version,
    /// TCP and flow-control options, credentials, TLS and the Will (the reconnect delays are ``MosquittoLoop``'s).
    func configure(_ configuration: MQTTConfiguration) throws {
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
            try check(
                mosquitto_int_option(pointer, MOSQ_OPT_SEND_MAXIMUM, Int32(clamping: configuration.maximumInflightMessages)),
                "set the send maximum")
        }
        if configuration.username != nil || configuration.password != nil {
            try check(mosquitto_username_pw_set(pointer, configuration.username, configuration.password), "set the username and password")
        }
        if let tls = configuration.tls {
            for file in [tls.caFile, tls.certificateFile, tls.keyFile].compactMap({ $0 })
            where !FileManager.default.isReadableFile(atPath: file) {
                throw MQTTError(.tlsFailure, "The TLS file '\(file)' does not exist or is not readable")
            }
            if tls.caFile == nil {
                try check(mosquitto_int_option(pointer, MOSQ_OPT_TLS_USE_OS_CERTS, 1), "use the system's CA certificates")
            }
            if tls.caFile != nil || tls.certificateFile != nil {
                let rc = mosquitto_tls_set(pointer, tls.caFile, nil, tls.certificateFile, tls.keyFile, nil)
                guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                    throw MQTTError(
                        .tlsFailure,
                        "Could not load the TLS files (CA \(tls.caFile ?? "system"), certificate \(tls.certificateFile ?? "none")): \(String(cString: mosquitto_strerror(rc)))"
                    )
                }
            }
            try check(mosquitto_tls_insecure_set(pointer, !tls.verifyHostname), "set TLS host name verification")
        }
        try setWill(configuration.will, protocolVersion: configuration.protocolVersion)
    }

    /// Sets (or, with `nil`, clears) the Will sent with the next CONNECT. Safe before the connect and from the loop
    /// thread's callbacks (the reconnect that reads it runs on that thread after the callback returns).
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
        let properties =
            protocolVersion == .v5
            ? try MosquittoPropertyList(publish: will.properties, willDelay: will.delay) : MosquittoPropertyList()
        let rc = will.payload.withUnsafeBytes { buffer in
            mosquitto_will_set_v5(
                pointer, will.topic, Int32(buffer.count), buffer.baseAddress, will.qos.rawValue, will.retain, properties.pointer)
        }
        // will_set_v5 takes ownership of the properties only on success.
        if rc == MOSQ_ERR_SUCCESS.rawValue { _ = properties.release() }
        try check(rc, "set the Will on '\(will.topic)'")
    }
}
