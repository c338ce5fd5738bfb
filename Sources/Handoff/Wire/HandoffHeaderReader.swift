import Foundation

/// A value of the header, as far as the envelope reader needs it: strings and numbers as read, only the kind of
/// the rest. `null` is not a value here: a key whose value is `null` counts as absent (docs/PROTOCOL.md §4).
enum HeaderValue: Equatable {
    case string(String)
    case number(HeaderNumber)
    case bool
    case object
    case array

    /// For error details: `a string`, `a number with a fraction`, ...
    var kind: String {
        switch self {
        case .string: "a string"
        case .number(.integer): "an integer"
        case .number(.fraction): "a number with a fraction"
        case .number(.outOfRange): "an integer beyond 64 bits"
        case .bool: "a boolean"
        case .object: "an object"
        case .array: "an array"
        }
    }
}

/// The exact value of a JSON number, computed from its digits (never through `Double`).
enum HeaderNumber: Equatable {
    /// An integral value within `Int` (`1`, `1.0`, `1e0`, `10E-1`, `-0` are all integers).
    case integer(Int)
    /// A value that is not integral, however small its fraction (`1.5`, `1.00000000000000000001`).
    case fraction
    /// An integral value outside `Int` (`9223372036854775808`, `1e999999999`).
    case outOfRange
}

/// The `origin` object's members, as read.
struct OriginMembers: Equatable {
    var instance: HeaderValue?
    var host: HeaderValue?
    var pid: HeaderValue?
}

/// The members of a `signature` or `encryption` object (docs/PROTOCOL.md §10), as read: `value` is the `mac` or the
/// `nonce`. `isObject` is false when the key holds something other than an object.
struct SealMembers: Equatable {
    var isObject = false
    var alg: HeaderValue?
    var key: HeaderValue?
    var value: HeaderValue?
}

/// The header as read by ``HeaderReader``: the values of the keys of docs/PROTOCOL.md §4 (all optional, so that
/// a missing one is reported by name, and checked one by one in the document's order).
struct WireHeader {
    var format: HeaderValue?
    var id: HeaderValue?
    var label: HeaderValue?
    var vsn: HeaderValue?
    var createdAt: HeaderValue?
    var origin: HeaderValue?
    var originMembers = OriginMembers()
    var contentType: HeaderValue?
    var length: HeaderValue?
    var sha256: HeaderValue?
    /// Only on checkpoints (docs/PROTOCOL.md §9).
    var incarnation: HeaderValue?
    /// Only on envelopes of keyed writers (docs/PROTOCOL.md §10); `nil` when absent or `null`.
    var signature: SealMembers?
    var encryption: SealMembers?
    /// How often the top-level object has a `format` member, and whether its (last) value was valid Unicode.
    var formatCount = 0
    var formatIsValidUnicode = true
    /// The first rule of §4 beyond JSON's grammar that the header breaks (a repeated key, an unpaired surrogate
    /// escape), if any: reported after the `format` check, since a header of another format may break it.
    var violation: String?

    /// Reads a header (the bytes before the first 0x0A) and applies checks 3 and 4 of docs/PROTOCOL.md §4
    /// "Reading an envelope": not a JSON object → `malformed`; a single `format` naming another format →
    /// `unsupportedFormat`, whatever else is wrong; a repeated key or an unpaired surrogate → `malformed`.
    static func decode(_ bytes: Data) throws(HandoffError) -> WireHeader {
        let result = bytes.withUnsafeBytes { buffer -> Result<WireHeader, HeaderReader.SyntaxError> in
            var reader = HeaderReader(bytes: buffer)
            return Result { () throws(HeaderReader.SyntaxError) -> WireHeader in try reader.read() }
        }
        let header: WireHeader
        switch result {
        case .success(let read): header = read
        case .failure(let error): throw HandoffError.unreadableEnvelope(.malformed, detail: error.detail)
        }
        if header.formatCount == 1, header.formatIsValidUnicode, case .string(let format)? = header.format,
            format != HandoffEnvelope.format
        {
            throw HandoffError.unreadableEnvelope(
                .unsupportedFormat,
                detail: "format '\(format.prefix(64))' is not supported, this reader reads '\(HandoffEnvelope.format)'"
            )
        }
        if let violation = header.violation {
            throw HandoffError.unreadableEnvelope(.malformed, detail: violation)
        }
        return header
    }

    /// The string at `key` (`nil`: absent or `null`); `malformed` if it is something else.
    func string(_ key: KeyPath<WireHeader, HeaderValue?>, _ name: String) throws(HandoffError) -> String? {
        try Self.string(self[keyPath: key], name)
    }

    /// The integer at `key` within `range` (`nil`: absent or `null`); `malformed` if it is anything else.
    func integer(
        _ key: KeyPath<WireHeader, HeaderValue?>,
        _ name: String,
        in range: ClosedRange<Int>
    ) throws(HandoffError) -> Int? {
        try Self.integer(self[keyPath: key], name, in: range)
    }

    /// A `signature` or `encryption` member as the envelope keeps it: `nil` when absent, `.invalid` when it is not an
    /// object of three strings (a keyed reader refuses it, docs/PROTOCOL.md §10.4; others ignore a signature).
    static func seal(_ members: SealMembers?, _ name: String, valueName: String) -> HandoffEnvelope.SealField? {
        guard let members else { return nil }
        guard members.isObject else { return .invalid("'\(name)' is not an object") }
        guard case .string(let alg)? = members.alg, case .string(let key)? = members.key, case .string(let value)? = members.value else {
            return .invalid("'\(name)' needs the string members 'alg', 'key' and '\(valueName)'")
        }
        return .valid(HandoffEnvelope.SealMember(alg: alg, key: key, value: value))
    }

    /// The `origin` object, checked.
    func checkedOrigin() throws(HandoffError) -> HandoffOrigin {
        guard let origin else { throw HandoffEnvelope.missing("origin") }
        guard origin == .object else { throw Self.wrongType("origin", expected: "an object", found: origin) }
        guard let instance = try Self.string(originMembers.instance, "origin.instance") else {
            throw HandoffEnvelope.missing("origin.instance")
        }
        let host = try Self.string(originMembers.host, "origin.host")
        let pid = try Self.integer(originMembers.pid, "origin.pid", in: Int(Int32.min)...Int(Int32.max))
        return HandoffOrigin(instance: instance, host: host, pid: pid.map { Int32($0) })
    }

    private static func string(_ value: HeaderValue?, _ name: String) throws(HandoffError) -> String? {
        guard let value else { return nil }
        guard case .string(let string) = value else { throw wrongType(name, expected: "a string", found: value) }
        return string
    }

    private static func integer(
        _ value: HeaderValue?,
        _ name: String,
        in range: ClosedRange<Int>
    ) throws(HandoffError) -> Int? {
        guard let value else { return nil }
        guard case .number(let number) = value, number != .fraction else {
            throw wrongType(name, expected: "an integer", found: value)
        }
        guard case .integer(let integer) = number, range.contains(integer) else {
            throw HandoffError.unreadableEnvelope(
                .malformed,
                detail: "field '\(name)' is out of range, expected an integer \(range.lowerBound)…\(range.upperBound)"
            )
        }
        return integer
    }

    private static func wrongType(_ name: String, expected: String, found: HeaderValue) -> HandoffError {
        HandoffError.unreadableEnvelope(
            .malformed,
            detail: "field '\(name)' has the wrong type, expected \(expected), found \(found.kind)"
        )
    }
}

/// The keys of one JSON object read so far (a header has about ten: a linear search beats hashing).
private struct SeenKeys {
    private var keys: [String] = []

    /// `false` if `key` was already seen.
    mutating func insert(_ key: String) -> Bool {
        guard !keys.contains(key) else { return false }
        if keys.isEmpty { keys.reserveCapacity(12) }
        keys.append(key)
        return true
    }
}

/// A strict JSON reader for the header (RFC 8259, plus the rules of docs/PROTOCOL.md §4), without Foundation's
/// JSON: one pass over the bytes, no `Double`. It keeps the values of the keys an envelope has and only checks
/// the rest: UTF-8 in strings, all escapes (surrogate pairs combined, an unpaired surrogate noted as a
/// violation), numbers as exact decimals, repeated keys at any depth noted as a violation, nesting at most
/// ``maximumDepth`` levels.
struct HeaderReader {
    /// The deepest nesting of objects and arrays, the header object itself being level 1 (§4).
    static let maximumDepth = 64

    /// Why the header is not a JSON object (check 3 of §4): always `malformed`.
    struct SyntaxError: Error {
        var detail: String
    }

    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private var violation: String?
    /// Whether the last string read was valid Unicode (no unpaired surrogate escape).
    private var lastStringIsValidUnicode = true

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    mutating func read() throws(SyntaxError) -> WireHeader {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
        skipSpace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else {
            throw SyntaxError(detail: index < bytes.count ? "the header is not a JSON object" : "the header is empty")
        }
        var header = WireHeader()
        var seen = SeenKeys()
        try object(depth: 1) { (key, reader: inout HeaderReader) throws(SyntaxError) in
            if !seen.insert(key) { reader.note("repeated key '\(key)' in the header") }
            switch key {
            case "format":
                header.format = try reader.value(in: 1, path: key)
                header.formatCount += 1
                header.formatIsValidUnicode = reader.lastStringIsValidUnicode
            case "id": header.id = try reader.value(in: 1, path: key)
            case "label": header.label = try reader.value(in: 1, path: key)
            case "vsn": header.vsn = try reader.value(in: 1, path: key)
            case "createdAt": header.createdAt = try reader.value(in: 1, path: key)
            case "contentType": header.contentType = try reader.value(in: 1, path: key)
            case "length": header.length = try reader.value(in: 1, path: key)
            case "sha256": header.sha256 = try reader.value(in: 1, path: key)
            case "incarnation": header.incarnation = try reader.value(in: 1, path: key)
            case "signature": header.signature = try reader.sealMembers(path: key, valueName: "mac")
            case "encryption": header.encryption = try reader.sealMembers(path: key, valueName: "nonce")
            case "origin":
                guard reader.peek == UInt8(ascii: "{") else {
                    header.origin = try reader.value(in: 1, path: key)
                    header.originMembers = OriginMembers()
                    return
                }
                header.origin = .object
                header.originMembers = try reader.origin()
            default:
                _ = try reader.value(in: 1, keep: false, path: key)
            }
        }
        skipSpace()
        guard index == bytes.count else { throw syntaxError("unexpected bytes after the header object") }
        header.violation = violation
        return header
    }

    private mutating func origin() throws(SyntaxError) -> OriginMembers {
        var members = OriginMembers()
        var seen = SeenKeys()
        try object(depth: 2) { (key, reader: inout HeaderReader) throws(SyntaxError) in
            if !seen.insert(key) { reader.note("repeated key 'origin.\(key)' in the header") }
            switch key {
            case "instance": members.instance = try reader.value(in: 2, path: "origin.instance")
            case "host": members.host = try reader.value(in: 2, path: "origin.host")
            case "pid": members.pid = try reader.value(in: 2, path: "origin.pid")
            default: _ = try reader.value(in: 2, keep: false, path: "origin.\(key)")
            }
        }
        return members
    }

    /// The value of `signature` or `encryption`: its `alg`, `key` and `valueName` members if it is an object, `nil`
    /// for `null`.
    private mutating func sealMembers(path: String, valueName: String) throws(SyntaxError) -> SealMembers? {
        guard peek == UInt8(ascii: "{") else {
            return try value(in: 1, path: path) == nil ? nil : SealMembers()
        }
        var members = SealMembers(isObject: true)
        var seen = SeenKeys()
        try object(depth: 2) { (key, reader: inout HeaderReader) throws(SyntaxError) in
            if !seen.insert(key) { reader.note("repeated key '\(path).\(key)' in the header") }
            switch key {
            case "alg": members.alg = try reader.value(in: 2, path: "\(path).alg")
            case "key": members.key = try reader.value(in: 2, path: "\(path).key")
            case valueName: members.value = try reader.value(in: 2, path: "\(path).\(valueName)")
            default: _ = try reader.value(in: 2, keep: false, path: "\(path).\(key)")
            }
        }
        return members
    }

    /// Notes the first violation of a rule beyond JSON's grammar; reading goes on.
    private mutating func note(_ violation: @autoclosure () -> String) {
        if self.violation == nil { self.violation = violation() }
    }

    private var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    /// One value inside a container at `depth`; `nil` for `null`. `keep: false` does not build strings.
    private mutating func value(in depth: Int, keep: Bool = true, path: String) throws(SyntaxError) -> HeaderValue? {
        lastStringIsValidUnicode = true
        guard let byte = peek else { throw syntaxError("the header ends inside '\(path)'") }
        switch byte {
        case UInt8(ascii: "\""):
            return .string(try string(keep: keep))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try number())
        case UInt8(ascii: "{"):
            var seen = SeenKeys()
            try object(depth: depth + 1) { (key, reader: inout HeaderReader) throws(SyntaxError) in
                if !seen.insert(key) { reader.note("repeated key '\(path).\(key)' in the header") }
                _ = try reader.value(in: depth + 1, keep: false, path: "\(path).\(key)")
            }
            return .object
        case UInt8(ascii: "["):
            try array(depth: depth + 1, path: path)
            return .array
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool
        case UInt8(ascii: "n"):
            try literal("null")
            return nil
        default:
            throw syntaxError("unexpected \(describe(byte)) as the value of '\(path)'")
        }
    }

    /// `{ "key": value, ... }` at `depth`, calling `member` with the reader at each value.
    private mutating func object(
        depth: Int,
        _ member: (String, inout HeaderReader) throws(SyntaxError) -> Void
    ) throws(SyntaxError) {
        guard depth <= Self.maximumDepth else {
            throw SyntaxError(detail: "the header nests objects and arrays deeper than \(Self.maximumDepth) levels")
        }
        index += 1  // {
        skipSpace()
        if consume(UInt8(ascii: "}")) { return }
        while true {
            skipSpace()
            guard peek == UInt8(ascii: "\"") else { throw syntaxError("expected a key in double quotes") }
            let key = try string(keep: true)
            skipSpace()
            guard consume(UInt8(ascii: ":")) else { throw syntaxError("expected ':' after a key") }
            skipSpace()
            try member(key, &self)
            skipSpace()
            if consume(UInt8(ascii: ",")) { continue }
            if consume(UInt8(ascii: "}")) { return }
            throw syntaxError("expected ',' or '}' in an object")
        }
    }

    /// `[ value, ... ]` at `depth`.
    private mutating func array(depth: Int, path: String) throws(SyntaxError) {
        guard depth <= Self.maximumDepth else {
            throw SyntaxError(detail: "the header nests objects and arrays deeper than \(Self.maximumDepth) levels")
        }
        index += 1  // [
        skipSpace()
        if consume(UInt8(ascii: "]")) { return }
        while true {
            skipSpace()
            _ = try value(in: depth, keep: false, path: "\(path)[]")
            skipSpace()
            if consume(UInt8(ascii: ",")) { continue }
            if consume(UInt8(ascii: "]")) { return }
            throw syntaxError("expected ',' or ']' in an array")
        }
    }

    // MARK: Strings

    /// A string at its opening quote. Printable ASCII without escapes (what writers write) is the fast path.
    private mutating func string(keep: Bool) throws(SyntaxError) -> String {
        index += 1  // "
        let start = index
        var ascii = true
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                if !ascii, !Self.isValidUTF8(raw) { throw syntaxError("a string is not valid UTF-8", at: start) }
                index += 1
                return keep ? String(decoding: raw, as: UTF8.self) : ""
            }
            if byte == UInt8(ascii: "\\") { return try escapedString(from: start) }
            if byte < 0x20 { throw syntaxError("a control character must be escaped in a string") }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        throw syntaxError("a string has no closing quote", at: start - 1)
    }

    /// The rest of a string that has an escape, from its first byte `start`.
    private mutating func escapedString(from start: Int) throws(SyntaxError) -> String {
        var utf8: [UInt8] = []
        utf8.reserveCapacity(index - start + 16)
        utf8.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                guard Self.isValidUTF8(utf8) else { throw syntaxError("a string is not valid UTF-8", at: start) }
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                index += 1
                guard let escape = peek else { break }
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"): Self.append(scalar: try unicodeEscape(), to: &utf8)
                default: throw syntaxError("invalid escape \\ followed by \(describe(escape)) in a string", at: index - 2)
                }
            case 0x00..<0x20:
                throw syntaxError("a control character must be escaped in a string")
            default:
                utf8.append(byte)
                index += 1
            }
        }
        throw syntaxError("a string has no closing quote", at: start - 1)
    }

    /// The scalar of a `\uXXXX` escape (after the `u`), combining a surrogate pair; an unpaired surrogate is
    /// noted as a violation and read as U+FFFD.
    private mutating func unicodeEscape() throws(SyntaxError) -> Unicode.Scalar {
        let escapeStart = index - 2
        let first = try hex4()
        if (0xD800...0xDBFF).contains(first), index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
            bytes[index + 1] == UInt8(ascii: "u")
        {
            let save = index
            index += 2
            let second = try hex4()
            if (0xDC00...0xDFFF).contains(second) {
                return Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))!
            }
            index = save  // the next escape is read on its own
        }
        if let scalar = Unicode.Scalar(first) { return scalar }
        let offset = escapeStart
        note("a string in the header is not valid Unicode: unpaired surrogate escape at byte \(offset)")
        lastStringIsValidUnicode = false
        return "\u{FFFD}"
    }

    private mutating func hex4() throws(SyntaxError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw syntaxError("a \\u escape needs four hexadecimal digits") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw syntaxError("a \\u escape needs four hexadecimal digits")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    private static func append(scalar: Unicode.Scalar, to utf8: inout [UInt8]) {
        UTF8.encode(scalar) { utf8.append($0) }
    }

    /// Whether `bytes` are UTF-8 as RFC 3629 defines it (no overlong forms, no surrogates, at most U+10FFFF).
    static func isValidUTF8<Bytes: RandomAccessCollection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8, Bytes.Index == Int {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let lead = bytes[index]
            if lead < 0x80 {
                index += 1
                continue
            }
            let count: Int
            var secondRange: ClosedRange<UInt8> = 0x80...0xBF
            switch lead {
            case 0xC2...0xDF: count = 1
            case 0xE0:
                count = 2
                secondRange = 0xA0...0xBF
            case 0xE1...0xEC, 0xEE...0xEF: count = 2
            case 0xED:
                count = 2
                secondRange = 0x80...0x9F
            case 0xF0:
                count = 3
                secondRange = 0x90...0xBF
            case 0xF1...0xF3: count = 3
            case 0xF4:
                count = 3
                secondRange = 0x80...0x8F
            default: return false
            }
            guard bytes.endIndex - index > count, secondRange.contains(bytes[index + 1]) else { return false }
            for offset in stride(from: 2, through: count, by: 1) where !(0x80...0xBF).contains(bytes[index + offset]) {
                return false
            }
            index += count + 1
        }
        return true
    }

    // MARK: Numbers

    /// A JSON number (`-? int frac? exp?`), its exact value computed from the digits.
    private mutating func number() throws(SyntaxError) -> HeaderNumber {
        let negative = consume(UInt8(ascii: "-"))
        let integerStart = index
        guard let first = peek, Self.isDigit(first) else { throw syntaxError("a number needs a digit") }
        index += 1
        if first != UInt8(ascii: "0") { skipDigits() }
        let integerEnd = index
        var fractionStart = index
        var fractionEnd = index
        if consume(UInt8(ascii: ".")) {
            fractionStart = index
            guard let digit = peek, Self.isDigit(digit) else { throw syntaxError("a number needs a digit after '.'") }
            skipDigits()
            fractionEnd = index
        }
        var exponent = 0
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            let negativeExponent = consume(UInt8(ascii: "-"))
            if !negativeExponent { _ = consume(UInt8(ascii: "+")) }
            guard let digit = peek, Self.isDigit(digit) else { throw syntaxError("a number needs a digit in its exponent") }
            // Saturated: a header has at most 65,536 digits, so beyond 10⁹ only the sign of the exponent matters.
            while let digit = peek, Self.isDigit(digit) {
                exponent = min(exponent * 10 + Int(digit - UInt8(ascii: "0")), 1_000_000_000)
                index += 1
            }
            if negativeExponent { exponent = -exponent }
        }
        // The common case: a plain integer of at most 18 digits.
        if fractionEnd == integerEnd, exponent == 0, integerEnd - integerStart <= 18 {
            var value = 0
            for position in integerStart..<integerEnd { value = value * 10 + Int(bytes[position] - UInt8(ascii: "0")) }
            return .integer(negative ? -value : value)
        }
        return exactValue(
            negative: negative, integer: integerStart..<integerEnd, fraction: fractionStart..<fractionEnd, exponent: exponent
        )
    }

    /// The value of `±(integer digits, fraction digits) × 10^(exponent − fraction digit count)`, exactly.
    private func exactValue(negative: Bool, integer: Range<Int>, fraction: Range<Int>, exponent: Int) -> HeaderNumber {
        let count = integer.count + fraction.count
        func digit(_ position: Int) -> UInt8 {
            let byte =
                position < integer.count ? bytes[integer.lowerBound + position] : bytes[fraction.lowerBound + position - integer.count]
            return byte - UInt8(ascii: "0")
        }
        guard let firstNonZero = (0..<count).first(where: { digit($0) != 0 }) else { return .integer(0) }  // 0, -0, 0e999999999
        let lastNonZero = (0..<count).last { digit($0) != 0 }!
        let significant = lastNonZero - firstNonZero + 1
        // The value is (significant digits) × 10^scale, and the significant digits do not end in 0.
        let scale = exponent - fraction.count + (count - 1 - lastNonZero)
        guard scale >= 0 else { return .fraction }
        // 2⁶³ has 19 digits: 20 or more are out of range (and would overflow UInt64 below).
        guard significant + scale <= 19 else { return .outOfRange }
        var magnitude: UInt64 = 0
        for position in firstNonZero...lastNonZero { magnitude = magnitude * 10 + UInt64(digit(position)) }
        for _ in 0..<scale { magnitude *= 10 }
        if negative {
            guard magnitude <= UInt64(Int.max) + 1 else { return .outOfRange }
            return .integer(magnitude == UInt64(Int.max) + 1 ? Int.min : -Int(magnitude))
        }
        guard magnitude <= UInt64(Int.max) else { return .outOfRange }
        return .integer(Int(magnitude))
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private mutating func skipDigits() {
        while let byte = peek, Self.isDigit(byte) { index += 1 }
    }

    // MARK: Bytes

    private mutating func literal(_ word: StaticString) throws(SyntaxError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw syntaxError("unexpected end of the header") }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] {
            throw syntaxError("unexpected \(describe(bytes[index]))")
        }
        index += count
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipSpace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0D, 0x0A: index += 1
            default: return
            }
        }
    }

    private func describe(_ byte: UInt8) -> String {
        (0x21..<0x7F).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16, uppercase: true))"
    }

    private func syntaxError(_ what: String, at position: Int? = nil) -> SyntaxError {
        let at = position ?? index
        let found = at < bytes.count ? "" : " (the header ends there)"
        return SyntaxError(detail: "header is not valid JSON: \(what) at byte \(at)\(found)")
    }
}
