/// The name under which handoffs wait: one per kind of state (the original's module name).
///
/// A label is any string of 1–200 UTF-8 bytes without Unicode control characters (U+0000–U+001F and
/// U+007F–U+009F). Everything else is allowed, including `/`, `+`, `#`, `$`, `%`, spaces and emoji: transports
/// that need a restricted alphabet use ``topicLevel``, a canonical percent-encoding that maps every label to
/// exactly one MQTT topic level and back.
///
/// Labels are compared by their UTF-8 bytes, not by Unicode canonical equivalence: `"é"` written as one
/// precomposed scalar and as `e` plus a combining accent are two different labels (with two different topic
/// levels). Use one normalisation form for your labels.
public struct HandoffLabel: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The largest label, in UTF-8 bytes.
    public static let maximumByteCount = 200

    /// The label as given.
    public let rawValue: String

    /// Validates `rawValue` as a label.
    ///
    /// - Throws: ``HandoffError/invalidLabel(_:reason:)`` when it is empty, longer than 200 UTF-8 bytes, or
    ///   contains a control character.
    public init(_ rawValue: String) throws(HandoffError) {
        if let reason = Self.violation(rawValue) {
            throw .invalidLabel(rawValue, reason: reason)
        }
        self.rawValue = rawValue
    }

    /// The label itself.
    public var description: String { rawValue }

    /// The label as one MQTT topic level: its UTF-8 bytes percent-encoded.
    ///
    /// Bytes of `A–Z a–z 0–9 - . _ ~` are kept; every other byte becomes `%` and two upper-case hexadecimal
    /// digits. So `counter` stays `counter`, `a/b` becomes `a%2Fb`, `$SYS` becomes `%24SYS`, `+#` becomes
    /// `%2B%23`, `é` becomes `%C3%A9` and `50%` becomes `50%25`. The result is never empty, never starts with
    /// `$`, and contains no `/`, `+`, `#` or NUL.
    public var topicLevel: String {
        // Most labels need no escaping: then the topic level is the label itself.
        if rawValue.utf8.allSatisfy(PercentEncoding.isUnreserved) { return rawValue }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(rawValue.utf8.count * 3)
        for byte in rawValue.utf8 {
            if PercentEncoding.isUnreserved(byte) {
                bytes.append(byte)
            } else {
                bytes.append(UInt8(ascii: "%"))
                bytes.append(PercentEncoding.hexDigits[Int(byte >> 4)])
                bytes.append(PercentEncoding.hexDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Recovers a label from its ``topicLevel``.
    ///
    /// Only the canonical encoding is accepted, so that each label has exactly one topic level: lower-case hex
    /// digits, `%` not followed by two hex digits, escaped bytes that need no escaping, and bytes that should
    /// have been escaped are refused.
    ///
    /// - Throws: ``HandoffError/invalidLabel(_:reason:)`` when `topicLevel` is not a canonical encoding of a
    ///   valid label.
    public init(topicLevel: String) throws(HandoffError) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(topicLevel.utf8.count)
        var iterator = topicLevel.utf8.makeIterator()
        while let byte = iterator.next() {
            if PercentEncoding.isUnreserved(byte) {
                bytes.append(byte)
                continue
            }
            guard byte == UInt8(ascii: "%") else {
                throw .invalidLabel(topicLevel, reason: "topic level contains a byte that must be percent-encoded")
            }
            guard let high = iterator.next().flatMap(PercentEncoding.upperHexValue),
                let low = iterator.next().flatMap(PercentEncoding.upperHexValue)
            else {
                throw .invalidLabel(
                    topicLevel,
                    reason: "'%' must be followed by two upper-case hexadecimal digits"
                )
            }
            let decoded = high << 4 | low
            guard !PercentEncoding.isUnreserved(decoded) else {
                throw .invalidLabel(topicLevel, reason: "topic level escapes a byte that must be kept as is")
            }
            bytes.append(decoded)
        }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw .invalidLabel(topicLevel, reason: "topic level does not decode to valid UTF-8")
        }
        try self.init(string)
    }

    /// Decodes a label from a single string, validating it.
    public init(from decoder: any Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(string)
        } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: decoder.codingPath, debugDescription: error.description)
            )
        }
    }

    /// Encodes the label as a single string.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    /// Labels are equal when their UTF-8 bytes are (see the type's documentation).
    public static func == (lhs: HandoffLabel, rhs: HandoffLabel) -> Bool {
        lhs.rawValue.utf8.elementsEqual(rhs.rawValue.utf8)
    }

    /// Hashes the UTF-8 bytes, consistently with `==`.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(rawValue.utf8.count)
        for byte in rawValue.utf8 { hasher.combine(byte) }
    }

    /// The rule `label` breaks, or nil when it is a valid label.
    static func violation(_ label: String) -> String? {
        let count = label.utf8.count
        if count == 0 { return "a label must not be empty" }
        if count > maximumByteCount {
            return "a label must be at most \(maximumByteCount) UTF-8 bytes, this one has \(count)"
        }
        for scalar in label.unicodeScalars where scalar.value <= 0x1F || (0x7F...0x9F).contains(scalar.value) {
            let code = String(scalar.value, radix: 16, uppercase: true)
            return "a label must not contain control characters, found U+\(String(repeating: "0", count: 4 - code.count))\(code)"
        }
        return nil
    }
}

/// The byte classes of RFC 3986 percent-encoding, as used for topic levels.
enum PercentEncoding {
    /// The upper-case hexadecimal digits, as ASCII bytes.
    static let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// Whether `byte` is kept as is: `A–Z a–z 0–9 - . _ ~`.
    @inline(__always)
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// The value of an upper-case hexadecimal digit, or nil.
    static func upperHexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
