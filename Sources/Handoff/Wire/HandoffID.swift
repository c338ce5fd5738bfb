import Foundation

/// The identity of one handoff: 1–64 characters of `A–Z a–z 0–9 _ -`, used verbatim as a topic level.
public struct HandoffID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The largest id, in characters.
    public static let maximumLength = 64

    /// The id as given.
    public let rawValue: String

    /// Validates `raw` as an id.
    ///
    /// - Throws: ``HandoffError/invalidID(_:)`` unless `raw` is 1–64 characters of `A–Z a–z 0–9 _ -`.
    public init(_ raw: String) throws(HandoffError) {
        guard Self.isValid(raw) else { throw .invalidID(raw) }
        self.rawValue = raw
    }

    private init(unchecked raw: String) {
        self.rawValue = raw
    }

    /// A new random id: a lower-case UUID such as `7d444840-9dc0-11d1-b245-5ffdce74fad2`.
    ///
    /// A version 4 UUID from the system's random generator (`getrandom` on Linux, where Foundation's `UUID()`
    /// opens and reads /dev/urandom every time: three system calls per handoff in a bulk shutdown).
    public static func random() -> HandoffID {
        var generator = SystemRandomNumberGenerator()
        var bytes = (generator.next() as UInt64, generator.next() as UInt64)
        return withUnsafeMutableBytes(of: &bytes) { raw in
            raw[6] = raw[6] & 0x0F | 0x40  // version 4
            raw[8] = raw[8] & 0x3F | 0x80  // RFC 4122 variant
            let digits: StaticString = "0123456789abcdef"
            return HandoffID(
                unchecked: String(unsafeUninitializedCapacity: 36) { text in
                    var position = 0
                    for index in 0..<16 {
                        if index == 4 || index == 6 || index == 8 || index == 10 {
                            text[position] = UInt8(ascii: "-")
                            position += 1
                        }
                        text[position] = digits.utf8Start[Int(raw[index] >> 4)]
                        text[position + 1] = digits.utf8Start[Int(raw[index] & 0x0F)]
                        position += 2
                    }
                    return position
                }
            )
        }
    }

    /// The id itself.
    public var description: String { rawValue }

    /// Decodes an id from a single string, validating it.
    public init(from decoder: any Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        guard Self.isValid(string) else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(
                    codingPath: decoder.codingPath,
                    debugDescription: HandoffError.invalidID(string).description
                )
            )
        }
        self.rawValue = string
    }

    /// Encodes the id as a single string.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    static func isValid(_ raw: String) -> Bool {
        let utf8 = raw.utf8
        guard (1...maximumLength).contains(utf8.count) else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }
}
