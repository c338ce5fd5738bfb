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

    /// Encodes `value` as JSON.
    public func encode<T: Encodable>(_ value: T) throws -> Data {
        try JSONEncoder().encode(value)
    }

    /// Decodes a `type` from JSON.
    public func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try JSONDecoder().decode(type, from: data)
    }
}

/// Whether two media types name the same type: type and subtype compared without case, parameters
/// (`; charset=utf-8`) ignored.
func sameMediaType(_ lhs: String, _ rhs: String) -> Bool {
    if lhs == rhs { return true }
    func essence(_ value: String) -> String {
        let end = value.firstIndex(of: ";") ?? value.endIndex
        return value[..<end].trimmingCharacters(in: .whitespaces)
    }
    return essence(lhs).lowercased() == essence(rhs).lowercased()
}
