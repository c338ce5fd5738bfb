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
    /// - Throws: ``HandoffError`` (``HandoffError/Code/unreadableEnvelope``) with reason `tooLarge` (payload over `maximumSize`), `malformed` (no
    ///   header line, bad JSON, a missing, mistyped or invalid field, or more data than `length`), `truncated`
    ///   (less data than `length`), `unsupportedFormat` (another `format`) or `integrityFailure` (SHA-256
    ///   mismatch).
    public static func decode(
        _ payload: Data,
        maximumSize: Int = 256 * 1024 * 1024
    ) throws(HandoffError) -> HandoffEnvelope {
        guard payload.count <= maximumSize else {
            throw HandoffError.unreadableEnvelope(
                .tooLarge,
                detail: "payload of \(payload.count) bytes exceeds the maximum of \(maximumSize) bytes"
            )
        }
        guard !payload.isEmpty else {
            throw HandoffError.unreadableEnvelope(.malformed, detail: "empty payload")
        }
        guard let headerLength = headerLength(of: payload) else {
            if payload.count > maximumHeaderSize {
                throw HandoffError.unreadableEnvelope(
                    .malformed,
                    detail: "no header line within the first \(maximumHeaderSize + 1) bytes (the header may be at "
                        + "most \(maximumHeaderSize) bytes)"
                )
            }
            throw HandoffError.unreadableEnvelope(.malformed, detail: "no header line (no newline byte in the payload)")
        }
        let headerBytes = payload[payload.startIndex..<(payload.startIndex + headerLength)]
        let header = try WireHeader.decode(headerBytes)

        // `format` first: a different format may legitimately have a different header.
        guard let format = try header.string(\.format, "format") else { throw missing("format") }
        guard format == Self.format else {
            throw HandoffError.unreadableEnvelope(
                .unsupportedFormat,
                detail: "format '\(format)' is not supported, this reader reads '\(Self.format)'"
            )
        }
        guard let rawID = try header.string(\.id, "id") else { throw missing("id") }
        guard let id = try? HandoffID(rawID) else {
            throw HandoffError.unreadableEnvelope(.malformed, detail: "field 'id': \(HandoffError.invalidID(rawID))")
        }
        guard let rawLabel = try header.string(\.label, "label") else { throw missing("label") }
        let label: HandoffLabel
        do {
            label = try HandoffLabel(rawLabel)
        } catch {
            throw HandoffError.unreadableEnvelope(.malformed, detail: "field 'label': \(error)")
        }
        guard let vsn = try header.integer(\.vsn, "vsn", in: 0...Int.max) else { throw missing("vsn") }
        guard let rawCreatedAt = try header.string(\.createdAt, "createdAt") else { throw missing("createdAt") }
        guard let createdAt = RFC3339.parse(rawCreatedAt) else {
            throw HandoffError.unreadableEnvelope(
                .malformed,
                detail: "field 'createdAt' is not an RFC 3339 date-time such as '2026-11-25T06:00:00.123Z': "
                    + "'\(rawCreatedAt.prefix(64))'"
            )
        }
        let origin = try header.checkedOrigin()
        guard let contentType = try header.string(\.contentType, "contentType") else { throw missing("contentType") }
        guard let length = try header.integer(\.length, "length", in: 0...Int.max) else { throw missing("length") }
        guard let expectedDigest = try header.string(\.sha256, "sha256") else { throw missing("sha256") }
        let incarnation = try header.integer(\.incarnation, "incarnation", in: 1...Int.max)

        let dataStart = payload.startIndex + headerLength + 1
        let available = payload.endIndex - dataStart
        guard available >= length else {
            throw HandoffError.unreadableEnvelope(
                .truncated,
                detail: "header announces \(length) bytes of data, only \(available) arrived"
            )
        }
        guard available == length else {
            throw HandoffError.unreadableEnvelope(
                .malformed,
                detail: "header announces \(length) bytes of data, but \(available) follow the header"
            )
        }
        let data = payload[dataStart..<payload.endIndex]
        let actualDigest = hex(SHA256.hash(data: data))
        guard actualDigest == expectedDigest.lowercased() else {
            if expectedDigest.utf8.count != 64 || !expectedDigest.utf8.allSatisfy(\.isHexDigit) {
                throw HandoffError.unreadableEnvelope(
                    .malformed,
                    detail: "field 'sha256' is not 64 hexadecimal digits"
                )
            }
            throw HandoffError.unreadableEnvelope(
                .integrityFailure,
                detail: "SHA-256 of the data is \(actualDigest), the header says \(expectedDigest)"
            )
        }
        var envelope = HandoffEnvelope(
            validatedID: id,
            label: label,
            vsn: vsn,
            createdAt: createdAt,
            origin: origin,
            contentType: contentType,
            data: data,
            incarnation: incarnation
        )
        envelope.createdAtText = rawCreatedAt
        envelope.digest = actualDigest
        envelope.signature = WireHeader.seal(header.signature, "signature", valueName: "mac")
        envelope.encryption = WireHeader.seal(header.encryption, "encryption", valueName: "nonce")
        return envelope
    }

    /// The envelope exactly as read (its date is already whole milliseconds).
    private init(
        validatedID id: HandoffID,
        label: HandoffLabel,
        vsn: Int,
        createdAt: Date,
        origin: HandoffOrigin,
        contentType: String,
        data: Data,
        incarnation: Int?
    ) {
        self.id = id
        self.label = label
        self.vsn = vsn
        self.createdAt = createdAt
        self.origin = origin
        self.contentType = contentType
        self.data = data
        self.incarnation = incarnation
    }

    static func missing(_ field: String) -> HandoffError {
        HandoffError.unreadableEnvelope(.malformed, detail: "missing field '\(field)'")
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
