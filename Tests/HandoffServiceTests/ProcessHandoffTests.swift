import Foundation
import MosquittoTestKit
import Testing

/// Two real OS processes (the counter example), a real SIGTERM, a real broker.
@Suite("Handoff between OS processes", .timeLimit(.minutes(2)))
struct ProcessHandoffTests {
    @Test("SIGTERM to a running counter hands its count to a standby process, which continues from it")
    func sigtermHandsOffToStandby() async throws {
        try await withMosquittoBroker { broker in
            let label = "process-test-\(UUID().uuidString.prefix(8))"
            let primary = try ChildProcess("counter-example", [broker.plainURL, label])
            let reached = await primary.waitForLine { number(after: "count ", in: $0).flatMap { $0 >= 5 ? $0 : nil } }
            #expect(reached != nil, "the primary counts: \(primary.output.suffix(3))")

            let standby = try ChildProcess("counter-example", [broker.plainURL, label])
            // The standby counts from 0 on its own until it takes over.
            #expect(await standby.waitForLine { number(after: "count ", in: $0) } != nil)

            primary.send(SIGTERM)
            #expect(await primary.waitForExit() == 0)
            let handedOff = try #require(
                primary.output.lazy.compactMap { number(after: "handed off count ", in: $0) }.first,
                "the primary reports its handoff: \(primary.output.suffix(3))"
            )
            #expect(primary.output.last?.contains("handed-off") == true)

            let takenOver = await standby.waitForLine { line -> Int? in
                guard line.hasPrefix("took over [") else { return nil }
                return Int(line.dropFirst("took over [".count).prefix { $0.isNumber })
            }
            #expect(takenOver == handedOff)

            standby.send(SIGTERM)
            #expect(await standby.waitForExit() == 0)
            let final = try #require(standby.output.lazy.compactMap { number(after: "handed off count ", in: $0) }.first)
            #expect(final >= handedOff)
        }
    }

    @Test("SIGKILL to a checkpointing counter: the live standby continues from its last checkpoint once the Will is sent")
    func sigkillReleasesCheckpointToStandby() async throws {
        try await withMosquittoBroker { broker in
            let label = "crash-test-\(UUID().uuidString.prefix(8))"
            let flags = ["--checkpoint-ms", "200", "--will-delay", "1"]
            let primary = try ChildProcess("counter-example", [broker.plainURL, label] + flags)
            #expect(await primary.waitForLine { number(after: "count ", in: $0).flatMap { $0 >= 10 ? $0 : nil } } != nil)
            let standby = try ChildProcess("counter-example", [broker.plainURL, label] + flags)
            #expect(await standby.waitForLine { number(after: "count ", in: $0) } != nil)

            let clock = ContinuousClock()
            primary.send(SIGKILL)
            let killed = clock.now
            _ = await primary.waitForExit()
            let lastCounted = try #require(primary.output.compactMap { number(after: "count ", in: $0) }.last)
            let recovered = await standby.waitForLine(upTo: .seconds(10)) { checkpointTakeover(in: $0) }
            let elapsed = killed.duration(to: clock.now)
            let value = try #require(recovered, "the standby took nothing over: \(standby.output.suffix(5))")
            // At most one checkpoint interval (200 ms: two counts at 100 ms each, plus one in flight) is lost.
            #expect(value <= lastCounted && value >= lastCounted - 3, "recovered \(value) of \(lastCounted)")
            // mosquitto 2.0 sends due delayed Wills from its once-a-second housekeeping: a 1 s delay takes 1–2 s.
            // The Will, not the 30 s liveness lease, released it (the bound is generous for a loaded machine).
            #expect(elapsed < .seconds(8), "merged \(elapsed) after the SIGKILL, with a Will delay of 1 s")
            print("SIGKILL → standby merged \(value) of \(lastCounted) counted, after \(elapsed)")
            standby.send(SIGTERM)
            #expect(await standby.waitForExit() == 0)
        }
    }

    @Test("SIGKILL with no standby running: a successor started 10 s later still continues from the last checkpoint")
    func sigkillCheckpointWaitsForALaterSuccessor() async throws {
        try await withMosquittoBroker { broker in
            let label = "late-crash-test-\(UUID().uuidString.prefix(8))"
            let flags = ["--checkpoint-ms", "200", "--will-delay", "1"]
            let primary = try ChildProcess("counter-example", [broker.plainURL, label] + flags)
            #expect(await primary.waitForLine { number(after: "count ", in: $0).flatMap { $0 >= 8 ? $0 : nil } } != nil)
            primary.send(SIGKILL)
            _ = await primary.waitForExit()
            let lastCounted = try #require(primary.output.compactMap { number(after: "count ", in: $0) }.last)
            try await Task.sleep(for: .seconds(10))
            let successor = try ChildProcess("counter-example", [broker.plainURL, label] + flags)
            let recovered = await successor.waitForLine(upTo: .seconds(10)) { checkpointTakeover(in: $0) }
            let value = try #require(recovered, "the late successor took nothing over: \(successor.output.suffix(5))")
            #expect(value <= lastCounted && value >= lastCounted - 3, "recovered \(value) of \(lastCounted)")
            successor.send(SIGTERM)
            #expect(await successor.waitForExit() == 0)
        }
    }

    @Test("the README's demo: edge gateway primary and standby, SIGTERM, totals match (exit status 0)")
    func edgeGatewayDemo() async throws {
        let demo = try ChildProcess("handoff-demo", ["--before", "2", "--after", "1"])
        let status = await demo.waitForExit(upTo: .seconds(60))
        #expect(status == 0, "demo output:\n\(demo.output.joined(separator: "\n"))")
        #expect(demo.output.contains { $0.hasPrefix("TOTALS MATCH") })
        #expect(demo.output.contains { $0.contains("standby merged its state") })
    }
}

/// The state in a counter's "took over [N] from a checkpoint: …" line.
private func checkpointTakeover(in line: String) -> Int? {
    guard line.hasPrefix("took over ["), line.contains("from a checkpoint") else { return nil }
    return Int(line.dropFirst("took over [".count).prefix { $0.isNumber })
}
