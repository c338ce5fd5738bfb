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

    @Test("the README's demo: edge gateway primary and standby, SIGTERM, totals match (exit status 0)")
    func edgeGatewayDemo() async throws {
        let demo = try ChildProcess("handoff-demo", ["--before", "2", "--after", "1"])
        let status = await demo.waitForExit(upTo: .seconds(60))
        #expect(status == 0, "demo output:\n\(demo.output.joined(separator: "\n"))")
        #expect(demo.output.contains { $0.hasPrefix("TOTALS MATCH") })
        #expect(demo.output.contains { $0.contains("standby merged its state") })
    }
}
