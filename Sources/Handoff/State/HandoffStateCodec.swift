import Foundation

/// Turns a state into bytes and back. The content type is written into every envelope, and a channel only
/// accepts handoffs of its own codec's content type.
public protocol HandoffStateCodec: Sendable {
    /// The media type of the bytes, such as `application/json`.
    var contentType: String { get }
    /// Encodes `value`.
    func encode<T: Encodable>(_ value: T) throws -> Data
    /// Decodes a `type` from `data` (which may be a slice: its indices need not start at zero).
    func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T
}

/// JSON through Foundation's `JSONEncoder` and `JSONDecoder` with their default settings
/// (content type `application/json`).
public struct JSONStateCodec: HandoffStateCodec {
    /// `application/json`.
    public var contentType: String { "application/json" }

    /// Creates the codec.
    public init() {}

    /// Encodes `value` as JSON, object keys sorted: equal states encode to equal bytes (Foundation's key order
    /// otherwise changes from one call to the next), which is how a checkpoint of an unchanged state is skipped.
    public func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return try encoder.encode(value)
    }

    /// Decodes a `type` from JSON.
    public func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try JSONDecoder().decode(type, from: data)
    }
}

/// Whether two media types name the same type (docs/PROTOCOL.md §7): the type/subtype (before any `;`, without
/// spaces and tabs around it) compared ASCII case-insensitively; parameters (`; charset=utf-8`) ignored.
func sameMediaType(_ lhs: String, _ rhs: String) -> Bool {
    func essence(_ value: String) -> [UInt8] {
        let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
        let base = value.utf8.prefix { $0 != UInt8(ascii: ";") }
        let trimmed = base.drop(while: isSpace).reversed().drop(while: isSpace).reversed()
        return trimmed.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }
    }
    return essence(lhs) == essence(rhs)
}
