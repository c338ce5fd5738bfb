import Crypto
import Foundation
import Testing

@testable import Handoff

@Suite("Envelope wire format")
struct EnvelopeTests {
    static let fixedDate = Date(timeIntervalSince1970: 1_795_586_400.123)  // 2026-11-25T06:00:00.123Z

    static func sample(data: Data = Data("42".utf8), label: String = "counter") throws -> HandoffEnvelope {
        HandoffEnvelope(
            id: try HandoffID("0f5a6b7c-0000-4000-8000-000000000001"),
            label: try HandoffLabel(label),
            vsn: 3,
            createdAt: fixedDate,
            origin: HandoffOrigin(instance: "node-a", host: "host-1", pid: 4242),
            contentType: "application/json",
            data: data
        )
    }

    /// Builds a payload from a header object and data, for the error cases.
    static func payload(_ header: [String: Any], data: Data) throws -> Data {
        var out = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        out.append(0x0A)
        out.append(data)
        return out
    }

    static func validHeader(for data: Data) -> [String: Any] {
        [
            "format": "swift-handoff/1", "id": "abc", "label": "counter", "vsn": 1,
            "createdAt": "2026-11-25T06:00:00.123Z", "origin": ["instance": "x"], "contentType": "application/json",
            "length": data.count, "sha256": HandoffEnvelope.hex(SHA256.hash(data: data)),
        ]
    }

    static func reason(of payload: Data, maximumSize: Int = 256 * 1024 * 1024) -> HandoffEnvelopeError? {
        do {
            _ = try HandoffEnvelope.decode(payload, maximumSize: maximumSize)
            return nil
        } catch {
            return error
        }
    }

    @Test("the header is exactly the documented single JSON line")
    func goldenHeader() throws {
        let envelope = try Self.sample()
        let payload = envelope.encoded()
        let expected =
            #"{"contentType":"application/json","createdAt":"2026-11-25T06:00:00.123Z","format":"swift-handoff/1","#
            + #""id":"0f5a6b7c-0000-4000-8000-000000000001","label":"counter","length":2,"#
            + #""origin":{"host":"host-1","instance":"node-a","pid":4242},"#
            + #""sha256":"73475cb40a568e8da8a045ced110137e159f890ac4da883b6b17dc651b3a8049","vsn":3}"#
            + "\n42"
        #expect(String(decoding: payload, as: UTF8.self) == expected)
        #expect(envelope.sha256 == "73475cb40a568e8da8a045ced110137e159f890ac4da883b6b17dc651b3a8049")
    }

    @Test("our header is what JSONEncoder with sorted keys and unescaped slashes writes")
    func matchesJSONEncoder() throws {
        struct Header: Encodable {
            var contentType, createdAt, format, id, label: String
            var length: Int
            var origin: HandoffOrigin
            var sha256: String
            var vsn: Int
        }
        let envelope = HandoffEnvelope(
            label: try HandoffLabel(#"a/b "quoted" \ é🙂"#),
            vsn: 0,
            origin: HandoffOrigin(instance: "i/\"x\"\u{1}", host: nil, pid: nil),
            contentType: "application/vnd.x+json; charset=utf-8",
            data: Data([0, 1, 2, 0x0A, 0xFF])
        )
        let header = Header(
            contentType: envelope.contentType, createdAt: RFC3339.format(envelope.createdAt),
            format: "swift-handoff/1", id: envelope.id.rawValue, label: envelope.label.rawValue,
            length: envelope.data.count, origin: envelope.origin, sha256: envelope.sha256, vsn: envelope.vsn
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let reference = try JSONSerialization.jsonObject(with: encoder.encode(header)) as? NSDictionary
        let payload = envelope.encoded()
        let newline = try #require(payload.firstIndex(of: 0x0A))
        let ours = try JSONSerialization.jsonObject(with: payload[..<newline]) as? NSDictionary
        #expect(ours == reference)
        #expect(try HandoffEnvelope.decode(payload) == envelope)
    }

    @Test("encode then decode gives the same envelope, with data sliced from the payload")
    func roundTrip() throws {
        for size in [0, 1, 1000, 70_000] {
            let data = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            let envelope = try Self.sample(data: data, label: "a/b+#$%🙂")
            let payload = envelope.encoded()
            let decoded = try HandoffEnvelope.decode(payload)
            #expect(decoded == envelope)
            #expect(decoded.data.count == size)
            #expect(decoded.sha256 == envelope.sha256)
            #expect(decoded.createdAt == envelope.createdAt)
            #expect(decoded.encoded() == payload)
        }
    }

    @Test("createdAt is truncated to whole milliseconds and survives the wire exactly")
    func createdAtTruncation() throws {
        for seconds in [0, 0.0009, 0.001, 1_795_586_400.123_999, -1.5, -0.0005, 1e10 + 0.999_9, 1_000_000_000.1] {
            let envelope = HandoffEnvelope(
                label: try HandoffLabel("t"), vsn: 1, createdAt: Date(timeIntervalSince1970: seconds),
                origin: HandoffOrigin(instance: "i"), data: Data()
            )
            let original = Date(timeIntervalSince1970: seconds)
            #expect(envelope.createdAt <= original.addingTimeInterval(0.000_001))
            #expect(original.timeIntervalSince(envelope.createdAt) < 0.001)
            let decoded = try HandoffEnvelope.decode(envelope.encoded())
            #expect(decoded.createdAt == envelope.createdAt)
            let again = HandoffEnvelope(
                label: decoded.label, vsn: 1, createdAt: decoded.createdAt, origin: decoded.origin, data: Data()
            )
            #expect(again.createdAt == envelope.createdAt)
        }
    }

    @Test("RFC 3339 formatting and parsing")
    func rfc3339() throws {
        #expect(RFC3339.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(RFC3339.format(Self.fixedDate) == "2026-11-25T06:00:00.123Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: -0.001)) == "1969-12-31T23:59:59.999Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00.000Z")
        #expect(RFC3339.format(Date.distantFuture) == "4001-01-01T00:00:00.000Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 1e15)) == "9999-12-31T23:59:59.999Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: -1e15)) == "0000-01-01T00:00:00.000Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: .infinity)) == "9999-12-31T23:59:59.999Z")
        #expect(RFC3339.parse("2026-11-25T06:00:00.123Z") == Self.fixedDate.truncatedForTest)
        #expect(RFC3339.parse("2026-11-25t06:00:00.123456z") == Self.fixedDate.truncatedForTest)
        #expect(RFC3339.parse("2026-11-25T07:30:00.123+01:30") == Self.fixedDate.truncatedForTest)
        #expect(RFC3339.parse("2026-11-25T06:00:00Z") == Date(timeIntervalSince1970: 1_795_586_400))
        #expect(RFC3339.parse("2026-11-25T06:00:00.1Z") == RFC3339.date(fromMilliseconds: 1_795_586_400_100))
        for bad in ["", "2026-11-25", "2026-11-25T06:00:00.123", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                    "2026-11-25T24:00:00Z", "2026-11-25T06:00:00.Z", "2026-11-25T06:00:00.123+0100",
                    "2026-11-25 06:00:00Z", "+2026-11-25T06:00:00Z", "2026-11-25T06:00:00.123Zjunk"] {
            #expect(RFC3339.parse(bad) == nil, "\(bad)")
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let milliseconds = Int64.random(in: RFC3339.minimumMilliseconds...RFC3339.maximumMilliseconds, using: &generator)
            let date = RFC3339.date(fromMilliseconds: milliseconds)
            #expect(RFC3339.milliseconds(truncating: date) == milliseconds)
            #expect(RFC3339.parse(RFC3339.format(date)) == date)
        }
    }

    @Test("unknown header keys are ignored; optional origin fields may be missing")
    func lenientHeader() throws {
        let data = Data("{}".utf8)
        var header = Self.validHeader(for: data)
        header["future"] = ["nested": [1, 2, 3]]
        header["origin"] = ["instance": "x", "extra": true]
        let envelope = try HandoffEnvelope.decode(try Self.payload(header, data: data))
        #expect(envelope.origin == HandoffOrigin(instance: "x"))
        #expect(envelope.data == data)
    }

    @Test("decoding works on a payload that is itself a slice")
    func slicedPayload() throws {
        let payload = try Self.sample().encoded()
        var padded = Data([9, 9, 9])
        padded.append(payload)
        let decoded = try HandoffEnvelope.decode(padded[3...])
        #expect(decoded == (try Self.sample()))
    }

    @Test("garbage, empty and header-only payloads are malformed")
    func garbage() throws {
        #expect(Self.reason(of: Data())?.reason == .malformed)
        #expect(Self.reason(of: Data("hello world".utf8))?.reason == .malformed)
        #expect(Self.reason(of: Data("not json\n42".utf8))?.reason == .malformed)
        #expect(Self.reason(of: Data("[1,2]\n".utf8))?.reason == .malformed)
        #expect(Self.reason(of: Data([0xFF, 0xFE, 0x0A, 0x00]))?.reason == .malformed)
        let full = try Self.sample().encoded()
        let headerOnly = full.prefix(upTo: try #require(full.firstIndex(of: 0x0A)))
        #expect(Self.reason(of: Data(headerOnly))?.reason == .malformed)
        #expect(Self.reason(of: Data(headerOnly) + Data([0x0A]))?.reason == .truncated)
    }

    @Test("less data than announced is truncated, more is malformed")
    func lengthMismatch() throws {
        let full = try Self.sample(data: Data(repeating: 7, count: 100)).encoded()
        let truncated = Self.reason(of: full.dropLast())
        #expect(truncated?.reason == .truncated)
        #expect(truncated?.detail.contains("100") == true)
        #expect(Self.reason(of: full + Data([1]))?.reason == .malformed)
    }

    @Test("a wrong SHA-256 is an integrity failure")
    func badDigest() throws {
        var payload = try Self.sample(data: Data("hello".utf8)).encoded()
        payload[payload.endIndex - 1] ^= 0x01
        #expect(Self.reason(of: payload)?.reason == .integrityFailure)
        let data = Data("x".utf8)
        var header = Self.validHeader(for: data)
        header["sha256"] = "nothex"
        #expect(Self.reason(of: try Self.payload(header, data: data))?.reason == .malformed)
        header["sha256"] = HandoffEnvelope.hex(SHA256.hash(data: data)).uppercased()
        #expect(Self.reason(of: try Self.payload(header, data: data)) == nil)
    }

    @Test("another format is unsupported, even when the rest of the header differs")
    func wrongFormat() throws {
        let data = Data("x".utf8)
        var header = Self.validHeader(for: data)
        header["format"] = "swift-handoff/2"
        #expect(Self.reason(of: try Self.payload(header, data: data))?.reason == .unsupportedFormat)
        header["vsn"] = "one"
        header["id"] = nil
        #expect(Self.reason(of: try Self.payload(header, data: data))?.reason == .unsupportedFormat)
        header = Self.validHeader(for: data)
        header["format"] = nil
        #expect(Self.reason(of: try Self.payload(header, data: data)) == HandoffEnvelopeError(
            reason: .malformed, detail: "missing field 'format'"))
    }

    @Test("a header longer than 65,536 bytes is refused")
    func hugeHeader() throws {
        var payload = Data("{".utf8) + Data(repeating: UInt8(ascii: " "), count: 70_000) + Data("}\n".utf8)
        let error = Self.reason(of: payload)
        #expect(error?.reason == .malformed)
        #expect(error?.detail.contains("65536") == true)
        // A header of exactly 65,536 bytes is still read.
        let data = Data("x".utf8)
        var header = try JSONSerialization.data(withJSONObject: Self.validHeader(for: data), options: [.sortedKeys])
        header.removeLast()
        header.append(Data(repeating: UInt8(ascii: " "), count: HandoffEnvelope.maximumHeaderSize - header.count - 1))
        header.append(Data("}".utf8))
        #expect(header.count == HandoffEnvelope.maximumHeaderSize)
        payload = header + Data([0x0A]) + data
        #expect(Self.reason(of: payload) == nil)
    }

    @Test("payloads over the maximum size are too large")
    func tooLarge() throws {
        let payload = try Self.sample(data: Data(repeating: 1, count: 1000)).encoded()
        #expect(Self.reason(of: payload, maximumSize: 1000)?.reason == .tooLarge)
        #expect(Self.reason(of: payload, maximumSize: payload.count) == nil)
    }

    @Test(
        "missing, mistyped and invalid fields are malformed and named",
        arguments: [
            ("id", nil, "'id'"), ("label", nil, "'label'"), ("vsn", nil, "'vsn'"), ("createdAt", nil, "'createdAt'"),
            ("origin", nil, "'origin'"), ("contentType", nil, "'contentType'"), ("length", nil, "'length'"),
            ("sha256", nil, "'sha256'"), ("vsn", "1", "'vsn'"), ("vsn", 1.5, "'vsn'"), ("vsn", -1, "'vsn'"),
            ("length", "2", "'length'"), ("id", 7, "'id'"), ("id", "a b", "'id'"), ("label", "", "'label'"),
            ("label", "a\u{0}", "'label'"), ("createdAt", "yesterday", "'createdAt'"), ("createdAt", 0, "'createdAt'"),
            ("origin", "x", "'origin'"), ("origin", ["host": "h"], "'origin.instance'"),
            ("origin", ["instance": "x", "pid": "1"], "'origin.pid'"), ("format", 1, "'format'"),
            ("sha256", 5, "'sha256'"), ("contentType", ["a"], "'contentType'"),
        ] as [(String, (any Sendable)?, String)]
    )
    func badFields(key: String, value: (any Sendable)?, named: String) throws {
        let data = Data("42".utf8)
        var header = Self.validHeader(for: data)
        header[key] = value
        let error = try #require(Self.reason(of: try Self.payload(header, data: data)))
        #expect(error.reason == .malformed)
        #expect(error.detail.contains(named), "\(error.detail)")
    }
}

extension Date {
    fileprivate var truncatedForTest: Date { RFC3339.truncated(self) }
}
