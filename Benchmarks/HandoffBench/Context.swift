import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient

/// What every scenario needs: the broker, the floor, and a unique topic prefix per scenario and side.
struct BenchContext: Sendable {
    let host: String
    let port: Int
    let runID: String
    let floor: FloorRunner
    /// Bound on each phase of a scenario, seconds.
    let timeout: Double

    func prefix(_ scenario: String, _ side: String) -> String { "bench/\(runID)/\(scenario)/\(side)" }

    /// A swift-handoff participant with the library's default MQTT settings.
    func transport(prefix: String) async throws -> MQTTHandoffTransport {
        try await Self.transport(host: host, port: port, prefix: prefix)
    }

    static func transport(host: String, port: Int, prefix: String) async throws -> MQTTHandoffTransport {
        try await MQTTHandoffTransport.connect(
            configuration: MQTTConfiguration(host: host, port: port),
            options: MQTTHandoffTransport.Options(prefix: prefix)
        )
    }
}

/// The result of one scenario: its table rows and its JSON (swift-handoff's figures and the floor's report).
struct ScenarioResult: Sendable {
    var name: String
    var rows: [Row]
    var swift: JSON
    var floor: JSON
    var notes: [String] = []

    var json: JSON {
        var fields: [(String, JSON)] = [("swift_handoff", swift), ("floor", floor)]
        if !notes.isEmpty { fields.append(("notes", .array(notes.map(JSON.string)))) }
        return .object(fields)
    }
}

/// A state of about `bytes` bytes of JSON (`{"payload":"…","seq":N}`), the kind of state the bench hands off.
struct BenchState: Codable, Sendable, Equatable {
    var seq: Int
    var payload: String

    /// A payload that makes the JSON encoding `bytes` long (for seq values below 10^6).
    /// Built in place, without an intermediate copy (it counts in the large scenario's memory).
    static func payload(forEncodedSize bytes: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        let count = payloadCount(forEncodedSize: bytes)
        return String(unsafeUninitializedCapacity: count) { buffer in
            for index in 0..<count { buffer[index] = alphabet[index % alphabet.count] }
            return count
        }
    }

    static func payloadCount(forEncodedSize bytes: Int) -> Int {
        max(0, bytes - #"{"seq":000000,"payload":""}"#.utf8.count)
    }
}

/// Merges by taking the state of the newest handoff (the successor of the bench has nothing of its own).
let takeNewest = TakeNewestStrategy<BenchState>()

/// How the large scenario encodes its state: JSON (swift-handoff's default codec, Foundation's JSONEncoder)
/// or raw (8 bytes of `seq`, then the payload's bytes: what the library itself costs without JSON).
enum BenchCodec: String, CaseIterable, Sendable {
    case json, raw

    var codec: any HandoffStateCodec {
        switch self {
        case .json: JSONStateCodec()
        case .raw: RawBenchCodec()
        }
    }
}

/// `BenchState` as raw bytes: `seq` (8 bytes, little endian), then the payload's UTF-8.
struct RawBenchCodec: HandoffStateCodec {
    struct Unsupported: Error {}

    var contentType: String { "application/vnd.handoff-bench.raw" }

    func encode<T: Encodable>(_ value: T) throws -> Data {
        guard let state = value as? BenchState else { throw Unsupported() }
        var payload = state.payload
        return payload.withUTF8 { bytes in
            var data = Data(capacity: 8 + bytes.count)
            withUnsafeBytes(of: Int64(state.seq).littleEndian) { data.append(contentsOf: $0) }
            data.append(contentsOf: UnsafeRawBufferPointer(bytes))
            return data
        }
    }

    func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        guard type == BenchState.self, data.count >= 8 else { throw Unsupported() }
        let seq = data.prefix(8).enumerated().reduce(Int64(0)) { $0 | Int64($1.element) << (8 * Int64($1.offset)) }
        let state = BenchState(seq: Int(seq), payload: String(decoding: data.dropFirst(8), as: UTF8.self))
        guard let value = state as? T else { throw Unsupported() }
        return value
    }
}
