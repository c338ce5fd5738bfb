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
