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

    static func reason(of payload: Data, maximumSize: Int = 256 * 1024 * 1024) -> HandoffError? {
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
        for bad in [
            "", "2026-11-25", "2026-11-25T06:00:00.123", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
            "2026-11-25T24:00:00Z", "2026-11-25T06:00:00.Z", "2026-11-25T06:00:00.123+0100",
            "2026-11-25 06:00:00Z", "+2026-11-25T06:00:00Z", "2026-11-25T06:00:00.123Zjunk",
        ] {
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
        #expect(
            Self.reason(of: try Self.payload(header, data: data))
                == HandoffError.unreadableEnvelope(.malformed, detail: "missing field 'format'"))
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

    /// The sample envelope's payload with the JSON text `old` of its header replaced by `new`.
    static func edited(_ old: String, _ new: String) throws -> Data {
        let payload = String(decoding: try sample().encoded(), as: UTF8.self)
        precondition(payload.contains(old), old)
        guard let range = payload.range(of: old) else { return Data() }
        return Data(payload.replacingCharacters(in: range, with: new).utf8)
    }

    @Test(
        "numbers are exact decimal values of their text: integral and in range, or malformed",
        arguments: [
            ("\"vsn\":1", 1), ("\"vsn\":1.0", 1), ("\"vsn\":1e0", 1), ("\"vsn\":10E-1", 1), ("\"vsn\":100e-2", 1),
            ("\"vsn\":9223372036854775807", Int.max), ("\"vsn\":9223372036854775807.0", Int.max),
            ("\"vsn\":92233720368547758.07e2", Int.max), ("\"vsn\":0.9223372036854775807e19", Int.max),
            ("\"vsn\":-0", 0), ("\"vsn\":-0.0e-5", 0), ("\"vsn\":0e999999999", 0), ("\"vsn\":0.000e-999999999999999999999", 0),
            ("\"vsn\":1e+00000000000000000000001", 10), ("\"vsn\":1." + String(repeating: "0", count: 1000), 1),
            ("\"vsn\":1.5", nil), ("\"vsn\":12e-1", nil), ("\"vsn\":1.00000000000000000001", nil),
            ("\"vsn\":9223372036854775808", nil), ("\"vsn\":9223372036854775808.0", nil),
            ("\"vsn\":18446744073709551616", nil), ("\"vsn\":" + String(repeating: "9", count: 40), nil),
            ("\"vsn\":1e999999999", nil), ("\"vsn\":1e99999999999999999999", nil), ("\"vsn\":1e-999999999", nil),
            ("\"vsn\":-1e0", nil), ("\"vsn\":01", nil), ("\"vsn\":1.", nil), ("\"vsn\":.5", nil), ("\"vsn\":+1", nil),
            ("\"vsn\":1e", nil), ("\"vsn\":Infinity", nil), ("\"vsn\":NaN", nil), ("\"vsn\":-", nil),
        ] as [(String, Int?)]
    )
    func exactNumbers(text: String, value: Int?) throws {
        let payload = try Self.edited("\"vsn\":3", text)
        let clock = ContinuousClock()
        let start = clock.now
        let result = Result { () throws(HandoffError) in try HandoffEnvelope.decode(payload) }
        #expect(clock.now - start < .seconds(5), "\(text) took \(clock.now - start)")
        switch (result, value) {
        case (.success(let envelope), let value?): #expect(envelope.vsn == value)
        case (.failure(let error), nil):
            #expect(error.reason == .malformed)
            #expect(error.detail.contains("vsn") || error.detail.contains("JSON"), "\(error.detail)")
        default: Issue.record("\(text): \(result), expected \(String(describing: value))")
        }
    }

    @Test(
        "length and origin.pid read numbers the same way, each within its range",
        arguments: [
            ("\"length\":2", "\"length\":2.0", true), ("\"length\":2", "\"length\":20e-1", true),
            ("\"length\":2", "\"length\":2.5", false), ("\"length\":2", "\"length\":-0", false),  // 0: 2 bytes too many
            ("\"pid\":4242", "\"pid\":4.242e3", true), ("\"pid\":4242", "\"pid\":-0", true),
            ("\"pid\":4242", "\"pid\":-2147483648", true), ("\"pid\":4242", "\"pid\":2.147483647e9", true),
            ("\"pid\":4242", "\"pid\":2147483648", false), ("\"pid\":4242", "\"pid\":-2147483649", false),
            ("\"pid\":4242", "\"pid\":4242.5", false), ("\"pid\":4242", "\"pid\":\"4242\"", false),
        ]
    )
    func otherIntegers(old: String, new: String, valid: Bool) throws {
        let payload = try Self.edited(old, new)
        let error = Self.reason(of: payload)
        if valid {
            #expect(error == nil, "\(new): \(String(describing: error))")
        } else {
            #expect(error?.reason == .malformed, "\(new): \(String(describing: error))")
        }
    }

    @Test(
        "a repeated key anywhere in the header is malformed, unless a single format names another format",
        arguments: [
            ("\"vsn\":3", "\"vsn\":3,\"vsn\":3", HandoffRejection.Reason.malformed),
            ("\"vsn\":3", "\"vsn\":\"x\",\"vsn\":3", .malformed),
            ("\"vsn\":3", "\"vsn\":3,\"vsn\":\"x\"", .malformed),
            ("\"pid\":4242", "\"pid\":4242,\"pid\":4242", .malformed),
            ("\"instance\":\"node-a\"", "\"instance\":\"node-a\",\"instance\":\"node-a\"", .malformed),
            ("\"vsn\":3", "\"vsn\":3,\"zz\":1,\"zz\":1", .malformed),
            ("\"vsn\":3", "\"vsn\":3,\"x\":[{\"a\":1,\"a\":2}]", .malformed),
            ("\"format\":\"swift-handoff/1\"", "\"format\":\"swift-handoff/1\",\"format\":\"swift-handoff/1\"", .malformed),
            ("\"format\":\"swift-handoff/1\"", "\"format\":\"swift-handoff/2\",\"format\":\"swift-handoff/1\"", .malformed),
            ("\"format\":\"swift-handoff/1\"", "\"format\":\"swift-handoff/2\",\"id\":\"x\"", .unsupportedFormat),
        ]
    )
    func repeatedKeys(old: String, new: String, reason: HandoffRejection.Reason) throws {
        let error = Self.reason(of: try Self.edited(old, new))
        #expect(error?.reason == reason, "\(new): \(String(describing: error))")
        if reason == .malformed { #expect(error?.detail.contains("repeated key") == true, "\(String(describing: error))") }
    }

    @Test("the same key in two different objects is not repeated")
    func sameKeyInTwoObjects() throws {
        #expect(Self.reason(of: try Self.edited("\"vsn\":3", #""vsn":3,"x":{"vsn":1,"y":{"vsn":2}}"#)) == nil)
    }

    @Test(
        "strings: every escape, surrogate pairs combined; an unpaired surrogate escape or invalid UTF-8 is malformed",
        arguments: [
            (#""host":"\"\\\/\b\f\n\r\t\u00e9\u20AC""#, "\"\\/\u{8}\u{C}\n\r\té€" as String?),
            (#""host":"\ud83d\ude00""#, "😀"), (#""host":"\uD83D\uDE00""#, "😀"), ("\"host\":\"a\u{7F}b\"", "a\u{7F}b"),
            ("\"host\":\"😀é\"", "😀é"), (#""host":"\u0000""#, "\u{0}"),
            (#""host":"\ud800""#, nil), (#""host":"a\udc00b""#, nil), (#""host":"\ud800x""#, nil),
            (#""host":"\ud800\ud83d\ude00""#, nil), (#""host":"\ude00\ud83d""#, nil), (#""host":"\x41""#, nil),
            (#""host":"\u12""#, nil), ("\"host\":\"a\tb\"", nil), (#""host":"abc"#, nil),
        ] as [(String, String?)]
    )
    func strings(text: String, host: String?) throws {
        let result = Result { () throws(HandoffError) in try HandoffEnvelope.decode(try! Self.edited("\"host\":\"host-1\"", text)) }
        switch (result, host) {
        case (.success(let envelope), let host?): #expect(envelope.origin.host == host)
        case (.failure(let error), nil): #expect(error.reason == .malformed, "\(error)")
        default: Issue.record("\(text): \(result)")
        }
    }

    @Test("unpaired surrogates are malformed anywhere in the header; a single other format still wins")
    func unpairedSurrogates() throws {
        let inKey = Self.reason(of: try Self.edited("\"vsn\":3", #""vsn":3,"\ud800":1"#))
        #expect(inKey?.reason == .malformed)
        #expect(inKey?.detail.contains("unpaired surrogate") == true, "\(String(describing: inKey))")
        #expect(Self.reason(of: try Self.edited("\"vsn\":3", #""vsn":3,"x":["\udfff"]"#))?.reason == .malformed)
        let otherFormat = try Self.edited(#""format":"swift-handoff/1","id":"0f5a"#, #""format":"swift-handoff/2","id":"\ud800"#)
        #expect(Self.reason(of: otherFormat)?.reason == .unsupportedFormat)
        let badFormat = try Self.edited(#""format":"swift-handoff/1""#, #""format":"swift-handoff/2\ud800""#)
        #expect(Self.reason(of: badFormat)?.reason == .malformed)
    }

    @Test("invalid UTF-8 in a string is malformed: overlong, encoded surrogates, beyond U+10FFFF, cut short")
    func invalidUTF8() throws {
        let valid = try Self.edited("\"host\":\"host-1\"", "\"host\":\"@\"")
        let at = try #require(valid.firstIndex(of: UInt8(ascii: "@")))
        for bytes: [UInt8] in [[0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xFF], [0x80]] {
            var payload = valid
            payload.replaceSubrange(at...at, with: bytes)
            #expect(Self.reason(of: payload)?.reason == .malformed, "\(bytes)")
        }
    }

    @Test("other JSON: literals in unknown keys, trailing bytes, commas, nesting up to 64 levels")
    func otherJSON() throws {
        #expect(Self.reason(of: try Self.edited("\"vsn\":3", #""vsn":3,"a":true,"b":false,"c":[null,{},[]],"d":1e999999999"#)) == nil)
        for bad in [#""vsn":3,"a":truex"#, #""vsn":3,"#, #""vsn":3}{"#, #""vsn":3} x"#, #""vsn":3,"a":'x'"#] {
            #expect(Self.reason(of: try Self.edited("\"vsn\":3", bad))?.reason == .malformed, "\(bad)")
        }
        func nested(_ levels: Int) -> String {
            "\"vsn\":3,\"deep\":" + String(repeating: "[", count: levels) + String(repeating: "]", count: levels)
        }
        #expect(Self.reason(of: try Self.edited("\"vsn\":3", nested(63))) == nil)
        let deep = Self.reason(of: try Self.edited("\"vsn\":3", nested(64)))
        #expect(deep?.reason == .malformed)
        #expect(deep?.detail.contains("64") == true)
        #expect(Self.reason(of: try Self.edited("\"vsn\":3", nested(30_000)))?.reason == .malformed)
        // Nesting is checked with the grammar, before the format.
        let deepOtherFormat = try Self.edited("\"vsn\":3", nested(64)).replacingOccurrences(of: "swift-handoff/1", with: "swift-handoff/2")
        #expect(Self.reason(of: deepOtherFormat)?.reason == .malformed)
    }

    @Test("content types compare as media types: type/subtype ASCII case-insensitively, parameters ignored (§7)")
    func mediaTypes() {
        #expect(sameMediaType("Application/JSON; charset=utf-8", "application/json"))
        #expect(sameMediaType(" application/json\t;x=1", "APPLICATION/JSON"))
        #expect(!sameMediaType("application/jsonx", "application/json"))
        #expect(!sameMediaType("application/json-seq", "application/json"))
        #expect(!sameMediaType("text/json", "application/json"))
        #expect(!sameMediaType("application/\u{212A}son", "application/kson"))  // KELVIN SIGN is not ASCII K
    }

    @Test("a dead letter's detail is at most 1,024 bytes of UTF-8, cut at a scalar boundary (§7)")
    func detailTruncation() {
        #expect(HandoffRejection.truncatedDetail("short") == "short")
        let ascii = String(repeating: "a", count: 2000)
        #expect(HandoffRejection.truncatedDetail(ascii) == String(repeating: "a", count: 1024))
        let twoByte = String(repeating: "é", count: 600)  // 1,200 bytes
        #expect(HandoffRejection.truncatedDetail(twoByte) == String(repeating: "é", count: 512))
        let mixed = "a" + String(repeating: "😀", count: 300)  // 1 + 1,200 bytes
        let cut = HandoffRejection.truncatedDetail(mixed)
        #expect(cut.utf8.count == 1021 && cut == "a" + String(repeating: "😀", count: 255))
        let exact = String(repeating: "é", count: 512)
        #expect(HandoffRejection.truncatedDetail(exact) == exact)
    }
}

extension Data {
    fileprivate func replacingOccurrences(of old: String, with new: String) -> Data {
        Data(String(decoding: self, as: UTF8.self).replacingOccurrences(of: old, with: new).utf8)
    }
}

extension Date {
    fileprivate var truncatedForTest: Date { RFC3339.truncated(self) }
}
