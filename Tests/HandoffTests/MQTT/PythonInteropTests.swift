import Foundation
import Handoff
@testable import HandoffMQTT
import MosquittoClient
import MosquittoTestKit
import Testing

/// Interoperability with interop/python/handoff_client.py, an independent client written from
/// docs/PROTOCOL.md alone (Python, paho-mqtt), against a real mosquitto.
@Suite("Interoperability with an independent Python client", .timeLimit(.minutes(3)))
struct PythonInteropTests {
    struct Reading: Codable, Sendable, Equatable {
        var sensor: String
        var value: Int
    }

    @Test("handoffs initiated by the Python client are claimed and decoded by Swift, awkward labels included")
    func pythonToSwift() async throws {
        try await withMosquittoBroker { broker in
            for raw in ["a/b", "50%", "é", "+#$"] {
                let label = try HandoffLabel(raw)
                let ids = try await runPython(["initiate", "--port", "\(broker.plainPort)", "--label", raw, "--data", #"{"sensor":"s-\#(raw)","value":7}"#, "--count", "2"])
                try await withTransport(broker) { successor in
                    let channel = HandoffChannel<Reading>(label: label, transport: successor)
                    _ = try await channel.subscribe()
                    let batch = try await channel.complete()
                    #expect(batch.rejected.isEmpty, "\(batch.rejected)")
                    #expect(batch.handoffs.map(\.state) == Array(repeating: Reading(sensor: "s-\(raw)", value: 7), count: 2))
                    #expect(Set(batch.handoffs.map(\.id.rawValue)) == Set(try JSONDecoder().decode([String].self, from: ids)))
                }
            }
        }
    }

    @Test("Python and Swift successors race for the same handoffs: each is merged exactly once, none is lost, all agree")
    func race() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("race/py")
            let perBatch = 50
            var expected: Set<String> = []
            let predecessor = try await MQTTHandoffTransport.connect(configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort))
            let sender = HandoffChannel<Reading>(label: label, transport: predecessor)
            for value in 0..<perBatch { expected.insert(try await sender.initiate(Reading(sensor: "swift", value: value)).id.rawValue) }

            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("interop-\(UUID())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let total = perBatch * 3
            let racers = (0..<2).map { index in
                Task {
                    try await runPython([
                        "race", "--port", "\(broker.plainPort)", "--label", label.rawValue, "--expect", "\(total)",
                        "--out", directory.appendingPathComponent("racer-\(index).json").path, "--idle", "4",
                    ])
                }
            }
            let merged = Locked<[String: [String]]>([:])
            var successors: [MQTTHandoffTransport] = []
            for _ in 0..<2 {
                successors.append(try await MQTTHandoffTransport.connect(configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort)))
            }
            let workers = successors.map { transport in
                Task {
                    let channel = HandoffChannel<Reading>(label: label, transport: transport, timeout: .seconds(30))
                    let notices = try await channel.subscribe()
                    func drain() async throws {
                        let batch = try await channel.complete()
                        merged.withLock { merged in
                            for handoff in batch.handoffs { merged[handoff.id.rawValue, default: []].append(transport.origin.instance) }
                        }
                    }
                    try await drain()
                    for await notice in notices where notice == .available(label) { try await drain() }
                }
            }
            try await Task.sleep(for: .milliseconds(500))  // the Python racers subscribe
            // More handoffs while everybody is subscribed: from Swift and from Python.
            for value in perBatch..<(2 * perBatch) { expected.insert(try await sender.initiate(Reading(sensor: "swift", value: value)).id.rawValue) }
            let pythonIDs = try await runPython(["initiate", "--port", "\(broker.plainPort)", "--label", label.rawValue, "--data", #"{"sensor":"python","value":1}"#, "--count", "\(perBatch)"])
            expected.formUnion(try JSONDecoder().decode([String].self, from: pythonIDs))

            for racer in racers { _ = try await racer.value }
            try await Task.sleep(for: .milliseconds(500))
            for worker in workers { worker.cancel() }

            struct RacerResult: Decodable {
                var instance: String
                var verdicts: [String: String]
                var merged: [String: Reading]
            }
            var owners = merged.withLock { $0 }
            var racerResults: [RacerResult] = []
            for index in 0..<2 {
                let result = try JSONDecoder().decode(RacerResult.self, from: Data(contentsOf: directory.appendingPathComponent("racer-\(index).json")))
                racerResults.append(result)
                for id in result.merged.keys { owners[id, default: []].append(result.instance) }
            }
            #expect(Set(owners.keys) == expected, "lost: \(expected.subtracting(owners.keys).count)")
            #expect(owners.values.allSatisfy { $0.count == 1 }, "merged more than once: \(owners.filter { $0.value.count > 1 }.count)")
            // Who wins depends on the machine's load; that both languages took part in the rounds does not.
            #expect(racerResults.allSatisfy { !$0.verdicts.isEmpty }, "a Python racer saw no verdict")
            for result in racerResults {
                for (id, winner) in result.verdicts { #expect(owners[id]?.first == winner, "python \(result.instance) disagrees on \(id)") }
            }
            for transport in successors {
                var seen = 0
                for (id, owner) in owners {
                    guard let verdict = transport.verdict(label: label, id: id) else { continue }
                    seen += 1
                    #expect(verdict == owner.first, "swift disagrees on \(id)")
                }
                #expect(seen > 0, "a Swift successor saw no verdict")
                await transport.shutdown()
            }
            await predecessor.shutdown()
        }
    }

    @Test("the Python client reads the dead letters a Swift successor wrote, with their reason")
    func deadLettersAreReadable() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("dead/py")
            try await withTransport(broker) { successor in
                let channel = HandoffChannel<Reading>(label: label, transport: successor)
                let notices = try await channel.subscribe()
                try await MQTTClient.withConnection(MQTTConfiguration(host: broker.host, port: broker.plainPort)) { hostile in
                    try await hostile.publish(successor.topics.handoff(label, id: "junk"), payload: Data("not an envelope".utf8), qos: .atLeastOnce, retain: true)
                }
                _ = await notices.first { if case .rejected = $0 { true } else { false } }
            }
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("dead-\(UUID()).json")
            defer { try? FileManager.default.removeItem(at: out) }
            _ = try await runPython(["dead", "--port", "\(broker.plainPort)", "--label", label.rawValue, "--out", out.path])
            let letters = try JSONDecoder().decode([String: [String: String]].self, from: Data(contentsOf: out))
            #expect(letters["junk"]?["handoff-dead-reason"] == "malformed")
            #expect(letters["junk"]?["handoff-dead-topic"] == "handoff/handoffs/dead%2Fpy/junk")
        }
    }
}

/// Runs interop/python/handoff_client.py with `arguments`; returns its standard output, throws with its
/// standard error if it fails.
func runPython(_ arguments: [String]) async throws -> Data {
    let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("interop/python/handoff_client.py")
    let check = Process()
    check.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    check.arguments = ["-c", "import paho.mqtt"]
    try check.run()
    check.waitUntilExit()
    guard check.terminationStatus == 0 else {
        throw MosquittoTestKitError(.executableNotFound, "The interoperability tests need paho-mqtt for Python: apt-get install python3-paho-mqtt")
    }
    return try await withCheckedThrowingContinuation { continuation in
        Thread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [script.path] + arguments
            let output = Pipe()
            let errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            do {
                try process.run()
                let stdout = output.fileHandleForReading.readDataToEndOfFile()
                let stderr = errors.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                if process.terminationStatus == 0 {
                    continuation.resume(returning: stdout)
                } else {
                    let message = String(decoding: stderr, as: UTF8.self)
                    continuation.resume(throwing: MosquittoTestKitError(.commandFailed, "handoff_client.py \(arguments.first ?? "") failed: \(message)"))
                }
            } catch {
                continuation.resume(throwing: error)
            }
        }.start()
    }
}
