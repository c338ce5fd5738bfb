import CMosquitto
import Foundation

/// An owned `mosquitto_property` list built from Swift values; freed on deinit.
///
/// Not `Sendable`: it lives only for the duration of one call into libmosquitto.
final class MosquittoPropertyList {
    private(set) var pointer: OpaquePointer?

    init() {}

    deinit {
        if pointer != nil {
            mosquitto_property_free_all(&pointer)
        }
    }

    /// Gives up ownership (for calls such as `mosquitto_will_set_v5` that take the list on success).
    func release() -> OpaquePointer? {
        defer { pointer = nil }
        return pointer
    }

    func add(_ identifier: Int32, uint32 value: UInt32) throws {
        try check(mosquitto_property_add_int32(&pointer, identifier, value), "property \(identifier)")
    }

    func add(_ identifier: Int32, byte value: UInt8) throws {
        try check(mosquitto_property_add_byte(&pointer, identifier, value), "property \(identifier)")
    }

    func add(_ identifier: Int32, string value: String) throws {
        try check(mosquitto_property_add_string(&pointer, identifier, value), "property \(identifier)")
    }

    func add(_ identifier: Int32, binary value: [UInt8]) throws {
        guard value.count <= Int(UInt16.max) else {
            throw MQTTError(.invalidConfiguration, "MQTT binary properties are limited to 65,535 bytes; got \(value.count)")
        }
        try value.withUnsafeBytes { buffer in
            try check(
                mosquitto_property_add_binary(&pointer, identifier, buffer.baseAddress, UInt16(buffer.count)), "property \(identifier)")
        }
    }

    func add(userProperty: MQTTUserProperty) throws {
        try check(
            mosquitto_property_add_string_pair(&pointer, Int32(MQTT_PROP_USER_PROPERTY.rawValue), userProperty.name, userProperty.value),
            "user property '\(userProperty.name)'"
        )
    }

    /// The list for the properties of a PUBLISH or a Will.
    convenience init(publish properties: MQTTPublishProperties, willDelay: Duration? = nil) throws {
        self.init()
        for userProperty in properties.userProperties {
            try add(userProperty: userProperty)
        }
        if let expiry = properties.messageExpiry {
            try add(Int32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL.rawValue), uint32: expiry.mqttSeconds)
        }
        if let contentType = properties.contentType {
            try add(Int32(MQTT_PROP_CONTENT_TYPE.rawValue), string: contentType)
        }
        if let correlationData = properties.correlationData {
            try add(Int32(MQTT_PROP_CORRELATION_DATA.rawValue), binary: correlationData)
        }
        if let responseTopic = properties.responseTopic {
            try add(Int32(MQTT_PROP_RESPONSE_TOPIC.rawValue), string: responseTopic)
        }
        if let isUTF8 = properties.payloadIsUTF8 {
            try add(Int32(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR.rawValue), byte: isUTF8 ? 1 : 0)
        }
        if let willDelay {
            try add(Int32(MQTT_PROP_WILL_DELAY_INTERVAL.rawValue), uint32: willDelay.mqttSeconds)
        }
    }

    private func check(_ rc: Int32, _ what: String) throws {
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            throw MQTTError(.invalidConfiguration, "Invalid MQTT \(what): \(String(cString: mosquitto_strerror(rc)))")
        }
    }
}

extension MQTTPublishProperties {
    /// Copies the properties libmosquitto hands to a callback (valid only during the callback).
    init(copying list: OpaquePointer?) {
        self.init()
        guard let list else { return }
        var name: UnsafeMutablePointer<CChar>?
        var value: UnsafeMutablePointer<CChar>?
        var cursor = mosquitto_property_read_string_pair(list, Int32(MQTT_PROP_USER_PROPERTY.rawValue), &name, &value, false)
        while let current = cursor {
            if let name, let value {
                userProperties.append(MQTTUserProperty(String(cString: name), String(cString: value)))
            }
            free(name)
            free(value)
            name = nil
            value = nil
            cursor = mosquitto_property_read_string_pair(current, Int32(MQTT_PROP_USER_PROPERTY.rawValue), &name, &value, true)
        }
        var expiry: UInt32 = 0
        if mosquitto_property_read_int32(list, Int32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL.rawValue), &expiry, false) != nil {
            messageExpiry = .seconds(Int64(expiry))
        }
        contentType = Self.readString(list, Int32(MQTT_PROP_CONTENT_TYPE.rawValue))
        responseTopic = Self.readString(list, Int32(MQTT_PROP_RESPONSE_TOPIC.rawValue))
        var binary: UnsafeMutableRawPointer?
        var length: UInt16 = 0
        if mosquitto_property_read_binary(list, Int32(MQTT_PROP_CORRELATION_DATA.rawValue), &binary, &length, false) != nil {
            correlationData = binary.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(length))) } ?? []
            free(binary)
        }
        var format: UInt8 = 0
        if mosquitto_property_read_byte(list, Int32(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR.rawValue), &format, false) != nil {
            payloadIsUTF8 = format == 1
        }
    }

    private static func readString(_ list: OpaquePointer, _ identifier: Int32) -> String? {
        var value: UnsafeMutablePointer<CChar>?
        guard mosquitto_property_read_string(list, identifier, &value, false) != nil, let value else { return nil }
        defer { free(value) }
        return String(cString: value)
    }
}
