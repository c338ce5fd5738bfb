import Crypto
import Foundation

/// One handoff as it travels: who wrote which state, at which version, for which label.
///
/// ## Wire format `swift-handoff/1`
///
/// Other implementations read and write this format, so it is a contract:
///
/// ```
/// payload = header + 0x0A + data
/// ```
///
/// - `header` is one JSON object in UTF-8, on a single line (it contains no raw 0x0A byte), at most 65,536
///   bytes. Writers emit the keys sorted and do not escape `/`. Its keys:
///   - `"format"`: the string `"swift-handoff/1"`.
///   - `"id"`: the handoff id, 1–64 characters of `A–Z a–z 0–9 _ -`.
///   - `"label"`: the label as is (not percent-encoded), 1–200 UTF-8 bytes, no control characters.
///   - `"vsn"`: the version of the state's shape, an integer ≥ 0.
///   - `"createdAt"`: when the handoff was made, RFC 3339 in UTC with exactly three fractional digits, such as
///     `"2026-11-25T06:00:00.123Z"`. (Readers also accept other RFC 3339 forms and truncate to milliseconds.)
///   - `"origin"`: `{"instance": "...", "host": "...", "pid": 123}`; `host` and `pid` are optional.
///   - `"contentType"`: the media type of `data`, such as `"application/json"`.
///   - `"length"`: the number of bytes of `data`.
///   - `"sha256"`: the SHA-256 of `data` in lower-case hexadecimal.
///
///   Readers ignore keys they do not know.
/// - `data` is the encoded state, exactly `length` bytes, nothing after it.
///
/// Example: `{"contentType":"application/json","createdAt":"2026-11-25T06:00:00.123Z","format":"swift-handoff/1",
/// "id":"0f5a…","label":"counter","length":2,"origin":{"instance":"a"},"sha256":"…","vsn":1}` + `\n` + `41`.
public struct HandoffEnvelope: Sendable, Hashable {
    /// The value of the header's `format` key.
    public static let format = "swift-handoff/1"
    /// The largest header, in bytes (without the terminating 0x0A).
    public static let maximumHeaderSize = 65_536

    /// The handoff's identity.
    public var id: HandoffID { didSet { wire = nil } }
    /// The label it waits under.
    public var label: HandoffLabel { didSet { wire = nil } }
    /// The version of the state's shape that `data` was written at.
    public var vsn: Int { didSet { wire = nil } }
    /// When it was made, in whole milliseconds.
    public var createdAt: Date {
        didSet {
            wire = nil
            createdAtText = nil
        }
    }
    /// Who made it.
    public var origin: HandoffOrigin { didSet { wire = nil } }
    /// The media type of `data`.
    public var contentType: String { didSet { wire = nil } }
    /// The encoded state. After ``decode(_:maximumSize:)`` this is a slice of the payload (no copy): its
    /// indices need not start at zero, so index it from `data.startIndex`.
    public var data: Data {
        didSet {
            wire = nil
            digest = nil
        }
    }
    /// Set on checkpoints only: the incarnation (connection number, ≥ 1) of the writer when it wrote the checkpoint,
    /// which decides which of the writer's Wills releases it (docs/PROTOCOL.md §9). `nil` on handoffs.
    public var incarnation: Int? { didSet { wire = nil } }
    /// The header's `signature` (docs/PROTOCOL.md §10.2): set by ``HandoffKeySet/seal(_:)`` or read by
    /// ``decode(_:maximumSize:)``; written by ``encoded()`` when valid.
    package var signature: SealField? { didSet { wire = nil } }
    /// The header's `encryption` (docs/PROTOCOL.md §10.3): `data` is then ciphertext and tag until
    /// ``HandoffKeySet/open(_:)`` decrypts it.
    package var encryption: SealField? { didSet { wire = nil } }
    /// `createdAt` exactly as the header read had it (what a signature covers); `nil` for an envelope made here.
    package var createdAtText: String?
    /// The SHA-256 of `data` in lower-case hex when already known (read and verified, or computed once by a writer).
    package var digest: String?
    /// The payload made by ``withWireForm()``; every change of a field drops it.
    private var wire: Data?

    /// A `signature` or `encryption` object of the header as read.
    package enum SealField: Sendable, Hashable {
        case valid(SealMember)
        /// Present, but not an object of three strings: why.
        case invalid(String)

        package var member: SealMember? {
            if case .valid(let member) = self { member } else { nil }
        }
    }

    /// The members of a `signature` (`value`: the `mac`) or `encryption` (`value`: the `nonce`).
    package struct SealMember: Sendable, Hashable {
        package var alg: String
        package var key: String
        package var value: String

        package init(alg: String, key: String, value: String) {
            self.alg = alg
            self.key = key
            self.value = value
        }
    }

    /// The `signature.mac` in lower case: what a signed claim of this envelope's round binds to (docs/PROTOCOL.md §10.5).
    package var signatureMAC: String? { signature?.member?.value.lowercased() }

    /// Creates an envelope.
    ///
    /// - Parameters:
    ///   - id: Its identity; a new random id by default.
    ///   - label: The label it waits under.
    ///   - vsn: The version of the state's shape (≥ 0).
    ///   - createdAt: When it was made; now by default. It is truncated to whole milliseconds (and clamped to the
    ///     years 0000–9999) so that it survives the wire format exactly.
    ///   - origin: Who made it.
    ///   - contentType: The media type of `data`.
    ///   - data: The encoded state.
    ///   - incarnation: For a checkpoint, the writer's incarnation; `nil` for a handoff.
    public init(
        id: HandoffID = .random(),
        label: HandoffLabel,
        vsn: Int,
        createdAt: Date = Date(),
        origin: HandoffOrigin,
        contentType: String = "application/json",
        data: Data,
        incarnation: Int? = nil
    ) {
        precondition(vsn >= 0, "a handoff version must not be negative")
        precondition(incarnation.map { $0 >= 1 } ?? true, "an incarnation is at least 1")
        self.incarnation = incarnation
        self.id = id
        self.label = label
        self.vsn = vsn
        self.createdAt = RFC3339.truncated(createdAt)
        self.origin = origin
        self.contentType = contentType
        self.data = data
    }

    /// The SHA-256 of ``data`` in lower-case hexadecimal (computed on each call).
    public var sha256: String {
        digest ?? Self.hex(SHA256.hash(data: data))
    }

    /// The payload in the wire format `swift-handoff/1` (see the type's documentation).
    public func encoded() -> Data {
        if let wire { return wire }
        let header = encodedHeader()
        var payload = Data(capacity: header.count + 1 + data.count)
        payload.append(contentsOf: header)
        payload.append(0x0A)
        payload.append(data)
        return payload
    }

    /// The header line of ``encoded()`` (without its 0x0A), made from the fields: for a chunked handoff (docs/PROTOCOL.md
    /// §12), whose manifest carries it while the data travels in chunks, never copied into one payload.
    package func encodedHeader() -> [UInt8] {
        var header = HeaderWriter()
        header.object { object in
            object.string("contentType", contentType)
            object.string("createdAt", createdAtText ?? RFC3339.format(createdAt))
            if case .valid(let encryption)? = encryption {
                object.object("encryption") { nested in
                    nested.string("alg", encryption.alg)
                    nested.string("key", encryption.key)
                    nested.string("nonce", encryption.value)
                }
            }
            object.string("format", Self.format)
            object.string("id", id.rawValue)
            if let incarnation { object.integer("incarnation", incarnation) }
            object.string("label", label.rawValue)
            object.integer("length", data.count)
            object.object("origin") { nested in
                if let host = origin.host { nested.string("host", host) }
                nested.string("instance", origin.instance)
                if let pid = origin.pid { nested.integer("pid", Int(pid)) }
            }
            object.string("sha256", sha256)
            if case .valid(let signature)? = signature {
                object.object("signature") { nested in
                    nested.string("alg", signature.alg)
                    nested.string("key", signature.key)
                    nested.string("mac", signature.value)
                }
            }
            object.integer("vsn", vsn)
        }
        return header.bytes
    }

    /// This envelope with its payload made once: ``encoded()`` returns that payload without building it again,
    /// and `data` becomes a slice of it, so the state's bytes are held once, not twice, while a transport
    /// publishes them (16 MiB less at the peak of a 16 MiB handoff).
    package func withWireForm() -> HandoffEnvelope {
        guard wire == nil else { return self }
        let payload = encoded()
        var wired = self
        wired.data = payload[(payload.endIndex - data.count)...]
        wired.wire = payload
        return wired
    }

    /// This envelope, read from `payload`, with `payload` as its wire form: ``encoded()`` returns the bytes as
    /// received (another writer's key order or spacing included), so that whatever stores it again (a dead letter,
    /// a handoff returned to the waiting ones, a fallback file) stores it verbatim.
    package func withReceivedPayload(_ payload: Data) -> HandoffEnvelope {
        var received = self
        received.wire = payload
        return received
    }

    public static func == (lhs: HandoffEnvelope, rhs: HandoffEnvelope) -> Bool {
        lhs.id == rhs.id && lhs.label == rhs.label && lhs.vsn == rhs.vsn && lhs.createdAt == rhs.createdAt
            && lhs.origin == rhs.origin && lhs.contentType == rhs.contentType && lhs.data == rhs.data
            && lhs.incarnation == rhs.incarnation
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(label)
        hasher.combine(vsn)
        hasher.combine(createdAt)
        hasher.combine(origin)
        hasher.combine(contentType)
        hasher.combine(data)
        hasher.combine(incarnation)
    }

    /// `bytes` (a digest, a MAC, a nonce) in lower-case hexadecimal.
    package static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var digits = [UInt8]()
        digits.reserveCapacity(SHA256.byteCount * 2)
        for byte in bytes {
            digits.append(lowerHexDigits[Int(byte >> 4)])
            digits.append(lowerHexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: digits, as: UTF8.self)
    }

    private static let lowerHexDigits: [UInt8] = Array("0123456789abcdef".utf8)
}

/// Writes a compact JSON object with keys in the order given (the caller sorts them), without escaping `/`.
/// Writing by hand keeps the header cheap and makes encoding infallible.
struct HeaderWriter {
    var bytes: [UInt8] = []
    private var needsComma = false

    init() {
        bytes.reserveCapacity(320)
    }

    mutating func object(_ body: (inout HeaderWriter) -> Void) {
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
        body(&self)
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    mutating func object(_ key: String, _ body: (inout HeaderWriter) -> Void) {
        self.key(key)
        object(body)
    }

    mutating func string(_ key: String, _ value: String) {
        self.key(key)
        quoted(value)
    }

    mutating func integer(_ key: String, _ value: Int) {
        self.key(key)
        bytes.append(contentsOf: String(value).utf8)
    }

    private mutating func key(_ key: String) {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        needsComma = true
        quoted(key)
        bytes.append(UInt8(ascii: ":"))
    }

    private mutating func quoted(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x08: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x00..<0x20:
                bytes.append(contentsOf: Array("\\u00".utf8))
                bytes.append(PercentEncoding.hexDigits[Int(byte >> 4)])
                bytes.append(PercentEncoding.hexDigits[Int(byte & 0x0F)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
