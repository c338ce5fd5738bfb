import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient
import Testing

@Suite("handoff republish and claim", .timeLimit(.minutes(1)))
struct RepublishClaimTests {
    /// Writes `payload` as `<directory>/<level>/<name>`.
    private func write(_ payload: Data, in directory: URL, level: String, name: String) throws -> URL {
        let folder = directory.appendingPathComponent(level, isDirectory: true)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let file = folder.appendingPathComponent(name)
        try payload.write(to: file)
        return file
    }

    @Test(
        "republish: publishes what the broker does not hold, skips what waits or is dead-lettered, refuses non-canonical folders and bad files"
    )
    func republish() async throws {
        try await withFixture { fixture in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cli-fallback-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: directory) }
            let label = try HandoffLabel("edge/gw-1")
            let fresh = envelope(label, json: #"{"readings":300}"#)
            let waiting = envelope(label, json: "2")
            let dead = envelope(label, json: "3")
            let freshFile = try write(fresh.encoded(), in: directory, level: label.topicLevel, name: "\(fresh.id).handoff")
            _ = try write(waiting.encoded(), in: directory, level: label.topicLevel, name: "\(waiting.id).handoff")
            _ = try write(dead.encoded(), in: directory, level: label.topicLevel, name: "\(dead.id).handoff")
            try await fixture.retain(fixture.topics.handoff(label, id: waiting.id.rawValue), waiting.encoded())
            try await fixture.retain(
                fixture.topics.deadLetter(label, id: dead.id.rawValue), dead.encoded(),
                properties: deadLetterProperties("validation-failed", detail: "no", topic: "t"))
            // `edge%2fgw-1`: lower-case hex, not the canonical level of any label.
            _ = try write(fresh.encoded(), in: directory, level: "edge%2fgw-1", name: "\(fresh.id).handoff")
            var corrupt = envelope(label, json: "4").encoded()
            corrupt[corrupt.count - 1] = UInt8(ascii: "5")
            let corruptID = HandoffID.random()
            _ = try write(corrupt, in: directory, level: label.topicLevel, name: "\(corruptID).handoff")

            let dry = try await handoff(["republish", directory.path, "--dry-run"], environment: fixture.environment)
            #expect(dry.stdout.contains("would publish 'edge/gw-1'/\(fresh.id)"), "\(dry)")
            let result = try await handoff(["republish", directory.path], environment: fixture.environment)
            print("handoff republish\n\(result.stdout)")
            #expect(result.isCleanFailure(), "\(result)")
            #expect(result.stderr.contains("2 of 5 files were not republished"))
            #expect(result.lines.contains { $0.hasPrefix("published  'edge/gw-1'/\(fresh.id)") })
            #expect(result.lines.contains { $0.hasPrefix("skipped    'edge/gw-1'/\(waiting.id): already waiting") })
            #expect(result.lines.contains { $0.hasPrefix("skipped    'edge/gw-1'/\(dead.id): the broker holds it as a dead letter") })
            #expect(
                result.lines.contains {
                    $0.hasPrefix("refused") && $0.contains("edge%2fgw-1") && $0.contains("not the canonical topic level")
                })
            #expect(
                result.lines.contains { $0.hasPrefix("refused") && $0.contains("\(corruptID).handoff") && $0.contains("integrity-failure") }
            )
            #expect(!FileManager.default.fileExists(atPath: freshFile.path))
            #expect(FileManager.default.fileExists(atPath: freshFile.path + ".republished"))

            // A successor finds the republished handoff, byte for byte.
            let successor = try await fixture.participant()
            _ = try await successor.watch(label)
            #expect(try await successor.pending(label).contains(fresh))
            await successor.shutdown()
            let missing = try await handoff(["republish", directory.appendingPathComponent("nope").path], environment: fixture.environment)
            #expect(missing.isCleanFailure(), "\(missing)")
        }
    }

    @Test(
        "claim: two handoff CLIs started together: exactly one wins (the other loses or finds it gone), a library successor agrees; the file holds the envelope as published"
    )
    func claimExactlyOnce() async throws {
        try await withFixture { fixture in
            let label = try HandoffLabel("counter")
            let waitingHandoff = envelope(label, json: #"{"count":42}"#)
            let predecessor = try await fixture.participant("predecessor-1")
            try await predecessor.initiate(waitingHandoff, timeout: .seconds(5))
            let successor = try await fixture.participant("successor-1")
            _ = try await successor.watch(label)
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cli-claim-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let files = ["one", "two"].map { folder.appendingPathComponent("\($0).handoff").path }
            let claimers = try files.map {
                try CLIProcess("handoff", ["claim", "counter", waitingHandoff.id.rawValue, "--to", $0], environment: fixture.environment)
            }
            var statuses: [Int32?] = []
            for claimer in claimers { statuses.append(await claimer.waitForExit()) }
            #expect(statuses.filter { $0 == 0 }.count == 1, "statuses \(statuses)\n\(claimers.map(\.stderr))")
            for (index, claimer) in claimers.enumerated() {
                if statuses[index] == 0 {
                    #expect(claimer.stdout.hasPrefix("claimed 'counter'/\(waitingHandoff.id)"))
                    #expect(FileManager.default.contents(atPath: files[index]) == waitingHandoff.encoded())
                    print("handoff claim\n\(claimer.stdout)")
                } else {
                    #expect(statuses[index] == 1)
                    // Lost the race (both saw it waiting), or came after the verdict (it was no longer waiting).
                    #expect(
                        claimer.stderr.contains("lost: another participant claimed") || claimer.stderr.contains("no handoff 'counter'"),
                        "\(claimer.stderr)")
                    #expect(!FileManager.default.fileExists(atPath: files[index]))
                    print("the other claimer: \(claimer.stderr)")
                }
            }
            // The library successor, watching all along, saw the same verdict: nothing for it.
            #expect(try await successor.claim(waitingHandoff, timeout: .seconds(5)) == false)
            // Nothing waits any more.
            let listed = try await handoff(["list"], environment: fixture.environment)
            #expect(listed.lines.first == "HANDOFFS WAITING (0)")

            // A second, uncontended claim, with --state-only.
            let second = envelope(label, json: #"{"count":7}"#)
            try await predecessor.initiate(second, timeout: .seconds(5))
            let stateFile = folder.appendingPathComponent("state.json").path
            let claimed = try await handoff(
                ["claim", "counter", second.id.rawValue, "--to", stateFile, "--state-only"], environment: fixture.environment)
            #expect(claimed.status == 0, "\(claimed)")
            #expect(FileManager.default.contents(atPath: stateFile) == Data(#"{"count":7}"#.utf8))
            let exists = try await handoff(["claim", "counter", second.id.rawValue, "--to", stateFile], environment: fixture.environment)
            #expect(exists.isCleanFailure() && exists.stderr.contains("exists already"), "\(exists)")
            let unknown = try await handoff(
                ["claim", "counter", "no-such-id", "--to", folder.appendingPathComponent("x").path], environment: fixture.environment)
            #expect(unknown.isCleanFailure() && unknown.stderr.contains("no handoff 'counter'/no-such-id waiting"), "\(unknown)")
            #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("x").path))
            for transport in [predecessor, successor] { await transport.shutdown() }
        }
    }
}
