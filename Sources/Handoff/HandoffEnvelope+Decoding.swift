import Crypto
import Foundation

extension HandoffEnvelope {
    /// Reads a payload in the wire format `swift-handoff/1` (see ``HandoffEnvelope``).
    ///
    /// The returned envelope's `data` is a slice of `payload`, not a copy.
    ///
    /// - Parameters:
    ///   - payload: The whole message.
    ///   - maximumSize: The largest payload accepted, in bytes (256 MiB by default, MQTT's limit).
    /// - Throws: ``HandoffEnvelopeError`` with reason `tooLarge` (payload over `maximumSize`), `malformed` (no
    ///   header line, bad JSON, a missing, mistyped or invalid field, or more data than `length`), `truncated`
    ///   (less data than `length`), `unsupportedFormat` (another `format`) or `integrityFailure` (SHA-256
    ///   mismatch).
    public static func decode(
        _ payload: Data,
        maximumSize: Int = 256 * 1024 * 1024
    ) throws(HandoffEnvelopeError) -> HandoffEnvelope {
        guard payload.count <= maximumSize else {
            throw HandoffEnvelopeError(
                reason: .tooLarge,
                detail: "payload of \(payload.count) bytes exceeds the maximum of \(maximumSize) bytes"
            )
        }
        guard !payload.isEmpty else {
            throw HandoffEnvelopeError(reason: .malformed, detail: "empty payload")
        }
        guard let headerLength = headerLength(of: payload) else {
            if payload.count > maximumHeaderSize {
                throw HandoffEnvelopeError(
                    reason: .malformed,
                    detail: "no header line within the first \(maximumHeaderSize + 1) bytes (the header may be at "
                        + "most \(maximumHeaderSize) bytes)"
                )
            }
            throw HandoffEnvelopeError(reason: .malformed, detail: "no header line (no newline byte in the payload)")
        }
        let headerBytes = payload[payload.startIndex..<(payload.startIndex + headerLength)]
        let header = try WireHeader.decode(headerBytes)

        // `format` first: a different format may legitimately have a different header.
        guard let format = header.format else { throw missing("format") }
        guard format == Self.format else {
            throw HandoffEnvelopeError(
                reason: .unsupportedFormat,
                detail: "format '\(format)' is not supported, this reader reads '\(Self.format)'"
            )
        }
        guard let rawID = header.id else { throw missing("id") }
        guard let id = try? HandoffID(rawID) else {
            throw HandoffEnvelopeError(reason: .malformed, detail: "field 'id': \(HandoffError.invalidID(rawID))")
        }
        guard let rawLabel = header.label else { throw missing("label") }
        let label: HandoffLabel
        do {
            label = try HandoffLabel(rawLabel)
        } catch {
            throw HandoffEnvelopeError(reason: .malformed, detail: "field 'label': \(error)")
        }
        guard let vsn = header.vsn else { throw missing("vsn") }
        guard vsn >= 0 else {
            throw HandoffEnvelopeError(reason: .malformed, detail: "field 'vsn' must not be negative, found \(vsn)")
        }
        guard let rawCreatedAt = header.createdAt else { throw missing("createdAt") }
        guard let createdAt = RFC3339.parse(rawCreatedAt) else {
            throw HandoffEnvelopeError(
                reason: .malformed,
                detail: "field 'createdAt' is not an RFC 3339 date-time such as '2026-11-25T06:00:00.123Z': "
                    + "'\(rawCreatedAt.prefix(64))'"
            )
        }
        guard let origin = header.origin else { throw missing("origin") }
        guard let contentType = header.contentType else { throw missing("contentType") }
        guard let length = header.length else { throw missing("length") }
        guard let expectedDigest = header.sha256 else { throw missing("sha256") }

        let dataStart = payload.startIndex + headerLength + 1
        let available = payload.endIndex - dataStart
        guard length >= 0 else {
            throw HandoffEnvelopeError(reason: .malformed, detail: "field 'length' must not be negative")
        }
        guard available >= length else {
            throw HandoffEnvelopeError(
                reason: .truncated,
                detail: "header announces \(length) bytes of data, only \(available) arrived"
            )
        }
        guard available == length else {
            throw HandoffEnvelopeError(
                reason: .malformed,
                detail: "header announces \(length) bytes of data, but \(available) follow the header"
            )
        }
        let data = payload[dataStart..<payload.endIndex]
        let actualDigest = hex(SHA256.hash(data: data))
        guard actualDigest == expectedDigest.lowercased() else {
            if expectedDigest.utf8.count != 64 || !expectedDigest.utf8.allSatisfy(\.isHexDigit) {
                throw HandoffEnvelopeError(
                    reason: .malformed,
                    detail: "field 'sha256' is not 64 hexadecimal digits"
                )
            }
            throw HandoffEnvelopeError(
                reason: .integrityFailure,
                detail: "SHA-256 of the data is \(actualDigest), the header says \(expectedDigest)"
            )
        }
        return HandoffEnvelope(
            validatedID: id,
            label: label,
            vsn: vsn,
            createdAt: createdAt,
            origin: origin,
            contentType: contentType,
            data: data
        )
    }

    /// The envelope exactly as read (its date is already whole milliseconds).
    private init(
        validatedID id: HandoffID,
        label: HandoffLabel,
        vsn: Int,
        createdAt: Date,
        origin: HandoffOrigin,
        contentType: String,
        data: Data
    ) {
        self.id = id
        self.label = label
        self.vsn = vsn
        self.createdAt = createdAt
        self.origin = origin
        self.contentType = contentType
        self.data = data
    }

    private static func missing(_ field: String) -> HandoffEnvelopeError {
        HandoffEnvelopeError(reason: .malformed, detail: "missing field '\(field)'")
    }

    /// The byte count before the first 0x0A, looking at most `maximumHeaderSize + 1` bytes in.
    private static func headerLength(of payload: Data) -> Int? {
        payload.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) -> Int? in
            guard let base = buffer.baseAddress else { return nil }
            let searched = min(buffer.count, maximumHeaderSize + 1)
            guard let found = memchr(base, 0x0A, searched) else { return nil }
            return base.distance(to: UnsafeRawPointer(found))
        }
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(self)
    }
}

/// The header as read: every field optional, so that a missing one is reported by name, and every field
/// decoded on its own, so that a bad one is reported by name too.
struct WireHeader: Decodable {
    var format: String?
    var id: String?
    var label: String?
    var vsn: Int?
    var createdAt: String?
    var origin: HandoffOrigin?
    var contentType: String?
    var length: Int?
    var sha256: String?

    enum CodingKeys: String, CodingKey {
        case format, id, label, vsn, createdAt, origin, contentType, length, sha256
    }

    /// A field that could not be decoded.
    struct FieldError: Error {
        var field: String
        var underlying: any Error
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func field<T: Decodable>(_ key: CodingKeys) throws -> T? {
            do {
                return try container.decodeIfPresent(T.self, forKey: key)
            } catch {
                throw FieldError(field: key.stringValue, underlying: error)
            }
        }
        format = try field(.format)
        id = try field(.id)
        label = try field(.label)
        vsn = try field(.vsn)
        createdAt = try field(.createdAt)
        origin = try field(.origin)
        contentType = try field(.contentType)
        length = try field(.length)
        sha256 = try field(.sha256)
    }

    /// Only the format, to tell an unsupported format from a malformed header.
    private struct FormatOnly: Decodable {
        var format: String?
    }

    static func decode(_ bytes: Data) throws(HandoffEnvelopeError) -> WireHeader {
        // Headers as writers produce them (plain ASCII strings, integers) are read directly; anything else
        // (escapes, other types, duplicate keys, invalid JSON) goes through JSONDecoder, which also explains
        // what is wrong.
        let fast = bytes.withUnsafeBytes { buffer -> WireHeader? in
            var reader = FastHeaderReader(bytes: buffer)
            return reader.read()
        }
        if let fast { return fast }
        do {
            return try JSONDecoder().decode(WireHeader.self, from: bytes)
        } catch {
            if let format = (try? JSONDecoder().decode(FormatOnly.self, from: bytes))?.format,
                format != HandoffEnvelope.format
            {
                throw HandoffEnvelopeError(
                    reason: .unsupportedFormat,
                    detail: "format '\(format)' is not supported, this reader reads '\(HandoffEnvelope.format)'"
                )
            }
            throw HandoffEnvelopeError(reason: .malformed, detail: describe(error))
        }
    }

    private static func describe(_ error: any Error) -> String {
        guard let fieldError = error as? FieldError else {
            if case DecodingError.typeMismatch(_, let context) = error, context.codingPath.isEmpty {
                return "header is not a JSON object"
            }
            return "header is not valid JSON: \(brief(error))"
        }
        switch fieldError.underlying {
        case DecodingError.keyNotFound(let key, let context):
            let path = (context.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: ".")
            return "missing field '\(path)'"
        case DecodingError.typeMismatch(let type, let context):
            return "field '\(path(fieldError.field, context))' has the wrong type, expected \(type)"
        case DecodingError.valueNotFound(let type, let context):
            return "field '\(path(fieldError.field, context))' is null, expected \(type)"
        default:
            return "field '\(fieldError.field)' is invalid: \(brief(fieldError.underlying))"
        }
    }

    /// The dotted path of a failure inside `field` (such as `origin.pid`).
    private static func path(_ field: String, _ context: DecodingError.Context) -> String {
        let keys = context.codingPath.map(\.stringValue)
        return keys.first == field ? keys.joined(separator: ".") : field
    }

    private static func brief(_ error: any Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error { return context.debugDescription }
        return String(describing: error)
    }
}

extension WireHeader {
    /// An empty header, filled in by ``FastHeaderReader``.
    fileprivate init() {}
}

/// The keys of one JSON object read so far (a header has about ten: a linear search beats hashing).
private struct SeenKeys {
    private var keys: [String] = []

    /// `false` if `key` was already seen (a duplicate key: left to JSONDecoder).
    mutating func insert(_ key: String) -> Bool {
        guard !keys.contains(key) else { return false }
        if keys.isEmpty { keys.reserveCapacity(12) }
        keys.append(key)
        return true
    }
}

/// Reads the common form of a header without JSONDecoder: a JSON object whose strings are printable ASCII
/// without escapes and whose numbers are plain integers. Returns `nil` for anything else, leaving the
/// decision (and the error message) to JSONDecoder; so it never accepts what JSONDecoder would refuse, and
/// reads the same values where it accepts.
private struct FastHeaderReader {
    let bytes: UnsafeRawBufferPointer
    var index = 0

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    mutating func read() -> WireHeader? {
        var header = WireHeader()
        var seen = SeenKeys()
        let complete = object { key, reader in
            guard seen.insert(key) else { return false }
            switch key {
            case "format": return reader.string().map { header.format = $0 } != nil
            case "id": return reader.string().map { header.id = $0 } != nil
            case "label": return reader.string().map { header.label = $0 } != nil
            case "createdAt": return reader.string().map { header.createdAt = $0 } != nil
            case "contentType": return reader.string().map { header.contentType = $0 } != nil
            case "sha256": return reader.string().map { header.sha256 = $0 } != nil
            case "vsn": return reader.integer().map { header.vsn = $0 } != nil
            case "length": return reader.integer().map { header.length = $0 } != nil
            case "origin": return reader.origin().map { header.origin = $0 } != nil
            default: return reader.skipValue()
            }
        }
        skipSpace()
        guard complete, index == bytes.count else { return nil }
        return header
    }

    private mutating func origin() -> HandoffOrigin? {
        var instance: String?
        var host: String?
        var pid: Int32?
        var seen = SeenKeys()
        let complete = object { key, reader in
            guard seen.insert(key) else { return false }
            switch key {
            case "instance": return reader.string().map { instance = $0 } != nil
            case "host": return reader.string().map { host = $0 } != nil
            case "pid": return reader.integer().flatMap { Int32(exactly: $0) }.map { pid = $0 } != nil
            default: return reader.skipValue()
            }
        }
        guard complete, let instance else { return nil }
        return HandoffOrigin(instance: instance, host: host, pid: pid)
    }

    /// `{ "key": value, ... }`, calling `member` with the reader positioned at each value.
    private mutating func object(_ member: (String, inout FastHeaderReader) -> Bool) -> Bool {
        skipSpace()
        guard consume(UInt8(ascii: "{")) else { return false }
        skipSpace()
        if consume(UInt8(ascii: "}")) { return true }
        while true {
            skipSpace()
            guard let key = string() else { return false }
            skipSpace()
            guard consume(UInt8(ascii: ":")) else { return false }
            skipSpace()
            guard member(key, &self) else { return false }
            skipSpace()
            if consume(UInt8(ascii: ",")) { continue }
            return consume(UInt8(ascii: "}"))
        }
    }

    /// A string of printable ASCII without escapes.
    private mutating func string() -> String? {
        guard consume(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let value = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return value
            }
            guard byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") else { return nil }
            index += 1
        }
        return nil
    }

    /// An integer without fraction, exponent or leading zeros, within `Int`.
    private mutating func integer() -> Int? {
        let negative = consume(UInt8(ascii: "-"))
        let start = index
        var value = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(Int(bytes[index] - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
            index += 1
        }
        let digits = index - start
        guard digits > 0, digits == 1 || bytes[start] != UInt8(ascii: "0") else { return nil }
        guard index == bytes.count || !isNumberContinuation(bytes[index]) else { return nil }
        if negative {
            guard value != 0 else { return nil }
            return -value
        }
        return value
    }

    private func isNumberContinuation(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
    }

    /// Skips the value of a key this reader does not use (nested at most a few levels).
    private mutating func skipValue(depth: Int = 0) -> Bool {
        guard depth < 16, index < bytes.count else { return false }
        switch bytes[index] {
        case UInt8(ascii: "\""): return string() != nil
        case UInt8(ascii: "{"): return object { _, reader in reader.skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            index += 1
            skipSpace()
            if consume(UInt8(ascii: "]")) { return true }
            while true {
                skipSpace()
                guard skipValue(depth: depth + 1) else { return false }
                skipSpace()
                if consume(UInt8(ascii: ",")) { continue }
                return consume(UInt8(ascii: "]"))
            }
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        default: return integer() != nil
        }
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
        index += count
        return true
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipSpace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 || bytes[index] == 0x0D || bytes[index] == 0x0A {
            index += 1
        }
    }
}
