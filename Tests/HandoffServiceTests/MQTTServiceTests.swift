import Foundation
import Handoff
import HandoffMQTT
import HandoffService
import MetricsTestKit
import MosquittoClient
import MosquittoTestKit
import Testing

/// The service against a real mosquitto (MosquittoTestKit, configured from broker/mosquitto.conf).
@Suite("HandoffService against a real mosquitto", .timeLimit(.minutes(3)))
struct MQTTServiceTests {
    private static func connect(_ url: String) async throws -> MQTTHandoffTransport {
        var configuration = try MQTTConfiguration(url: url)
        configuration.shutdownTimeout = .seconds(1)
        return try await MQTTHandoffTransport.connect(configuration: configuration)
    }

    @Test("a successor started before the handoff and one started after it both receive it")
    func successorsBeforeAndAfter() async throws {
        try await withMosquittoBroker { broker in
            let before = uniqueLabel("before")
            let after = uniqueLabel("after")
            let predecessorTransport = try await Self.connect(broker.plainURL)
            let predecessor = await RunningService.start(
                HandoffService(
                    transport: predecessorTransport,
                    participants: [TestCounter(label: before, count: 7), TestCounter(label: after, count: 11)]
                )
            )

            // The successor of `before` is running when the predecessor shuts down.
            let successorTransport = try await Self.connect(broker.plainURL)
            let early = TestCounter(label: before)
            let earlyService = await RunningService.start(
                HandoffService(transport: successorTransport, participants: [early])
            )
            #expect(await early.handoffState == 0)

            let report = try await predecessor.stop()
            await predecessorTransport.shutdown()
            #expect(report.handedOff.count == 2)
            #expect(await eventually { await early.handoffState == 7 })
            #expect(await early.merged == [7])

            // The successor of `after` starts once the predecessor is gone: the handoff waited for it.
            let late = TestCounter(label: after)
            let lateService = await RunningService.start(
                HandoffService(transport: successorTransport, participants: [late])
            )
            #expect(await late.handoffState == 11)
            #expect(await late.merged == [11])

            _ = try await earlyService.stop()
            _ = try await lateService.stop()
            await successorTransport.shutdown()
        }
    }

    @Test("broker unreachable at shutdown: broker-unreachable within the budget, logged, counted, envelope kept")
    func brokerUnreachableAtShutdown() async throws {
        try await withMosquittoBroker { broker in
            let label = uniqueLabel("unreachable")
            let metrics = TestMetrics()
            let fallback = temporaryDirectory("fallback")
            defer { try? FileManager.default.removeItem(at: fallback) }
            let transport = try await Self.connect(broker.plainURL)
            let running = await RunningService.start(
                HandoffService(
                    transport: transport,
                    participants: [TestCounter(label: label, count: 42)],
                    // Operations may take 30 s: only the budget can end the shutdown within the bound below (generous, for
                    // a loaded machine).
                    configuration: .init(
                        shutdownBudget: .seconds(1), operationTimeout: .seconds(30), fallbackDirectory: fallback, metricsFactory: metrics
                    )
                )
            )
            await broker.stop()
            #expect(await eventually { !transport.client.isConnected })

            let clock = ContinuousClock()
            let start = clock.now
            let report = try await running.stop()
            let elapsed = start.duration(to: clock.now)
            await transport.shutdown()

            let outcome = try #require(report.outcome(for: label))
            #expect(outcome.kind == .brokerUnreachable)
            #expect(outcome.detail?.contains("NOT stored") == true)
            #expect(elapsed >= .seconds(1) && elapsed < .seconds(10), "the budget bounds the shutdown: \(elapsed)")
            #expect(
                try metrics.expectCounter("handoff_initiate_failed_total", [("reason", "broker-unreachable")])
                    .totalValue == 1
            )
            #expect(try metrics.expectCounter("handoff_initiated_total").totalValue == 0)

            // The envelope is on disk, byte for byte what would have been published.
            let file = try #require(outcome.fallbackFile)
            let envelope = try HandoffEnvelope.decode(try Data(contentsOf: URL(fileURLWithPath: file)))
            #expect(envelope.id == outcome.handoffID)
            #expect(envelope.label == label)
            #expect(String(decoding: envelope.data, as: UTF8.self) == "42")
            #expect(try HandoffFallbackStore(directory: fallback).envelopes().map(\.id) == [envelope.id])

            // It was not stored: after the broker is back, a successor finds nothing ...
            try await broker.start()
            let successorTransport = try await Self.connect(broker.plainURL)
            let successor = TestCounter(label: label)
            let successorService = await RunningService.start(
                HandoffService(transport: successorTransport, participants: [successor])
            )
            #expect(await successor.handoffState == 0)
            // ... until an operator republishes the saved envelope as docs say.
            try await MQTTClient.withConnection(try MQTTConfiguration(url: broker.plainURL)) { client in
                try await client.publish(
                    "handoff/handoffs/\(label.topicLevel)/\(envelope.id)",
                    payload: try Data(contentsOf: URL(fileURLWithPath: file)),
                    qos: .atLeastOnce,
                    retain: true
                )
            }
            #expect(await eventually { await successor.handoffState == 42 })
            _ = try await successorService.stop()
            await successorTransport.shutdown()
        }
    }

    @Test("budget exceeded on a connection that swallows packets: budget-exceeded, envelope kept, counted")
    func budgetExceeded() async throws {
        try await withMosquittoBroker { broker in
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            let label = uniqueLabel("budget")
            let metrics = TestMetrics()
            let fallback = temporaryDirectory("budget")
            defer { try? FileManager.default.removeItem(at: fallback) }
            let transport = try await Self.connect("mqtt://127.0.0.1:\(proxy.port)")
            let running = await RunningService.start(
                HandoffService(
                    transport: transport,
                    participants: [TestCounter(label: label, count: 5)],
                    configuration: .init(
                        shutdownBudget: .milliseconds(500),
                        // Only the budget can end the shutdown within the bound below (generous, for a loaded machine).
                        operationTimeout: .seconds(30),
                        fallbackDirectory: fallback,
                        metricsFactory: metrics
                    )
                )
            )
            await proxy.pause()
            let report = try await running.stop()
            let outcome = try #require(report.outcome(for: label))
            #expect(outcome.kind == .budgetExceeded)
            #expect(outcome.detail?.contains("may still arrive") == true)
            #expect(outcome.fallbackFile != nil)
            #expect(report.duration < .seconds(10), "the budget bounds the shutdown: \(report.duration)")
            #expect(
                try metrics.expectCounter("handoff_initiate_failed_total", [("reason", "budget-exceeded")]).totalValue
                    == 1
            )
            proxy.stop()
            await transport.shutdown()
        }
    }

    @Test("a throwing merge strategy: the claimed handoff goes to the dead letters and the fallback, never dropped")
    func throwingMergeDeadLetters() async throws {
        try await withMosquittoBroker { broker in
            let label = uniqueLabel("merge-throws")
            let metrics = TestMetrics()
            let fallback = temporaryDirectory("merge-throws")
            defer { try? FileManager.default.removeItem(at: fallback) }
            let predecessor = try await Self.connect(broker.plainURL)
            let envelope = try await HandoffChannel<Int>(label: label, transport: predecessor).initiate(-1)
            await predecessor.shutdown()

            let transport = try await Self.connect(broker.plainURL)
            let participant = RefusesNegative(label: label)
            let running = await RunningService.start(
                HandoffService(
                    transport: transport,
                    participants: [participant],
                    configuration: .init(fallbackDirectory: fallback, metricsFactory: metrics)
                )
            )
            #expect(await participant.handoffState == 0)
            let letters = try await transport.deadLetters(label, timeout: .seconds(5))
            #expect(letters.map(\.id) == [envelope.id.rawValue])
            #expect(letters.first?.reason == .mergeFailed)
            #expect(letters.first?.detail.contains("merge strategy threw") == true)
            #expect(letters.first?.payload == envelope.encoded(), "the dead letter is not the payload as received")
            #expect(try HandoffFallbackStore(directory: fallback).envelopes().map(\.id) == [envelope.id])
            #expect(try metrics.expectCounter("handoff_rejected_total", [("reason", "merge-failed")]).totalValue == 1)
            _ = try await running.stop()
            await transport.shutdown()
        }
    }
}
