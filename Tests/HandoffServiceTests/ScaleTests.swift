import Foundation
import Handoff
import HandoffMQTT
import HandoffService
import MosquittoClient
import MosquittoTestKit
import Testing

/// One process hosting 10,000 participants over one broker connection.
///
/// The broker runs broker/mosquitto.conf with one change: the store is saved by time (every 30 minutes and at a
/// graceful stop) instead of after every change. With per-change saves (`autosave_on_changes true`,
/// `autosave_interval 1`, what the tests and docker-compose use) every one of the 10,000 subscriptions and
/// handoffs makes mosquitto rewrite and fsync its whole store: measured, subscribing 10,000 labels did not finish
/// within 3 minutes. broker/README.md and the README discuss that trade-off.
@Suite("HandoffService at scale", .timeLimit(.minutes(3)))
struct ScaleTests {
    static let participants = 10_000

    /// A copy of the repository's broker/ folder whose mosquitto.conf saves by time, not after every change.
    static func timeSavedBrokerConfig() throws -> URL {
        let source = MosquittoBroker.defaultConfigDirectory()
        let copy = temporaryDirectory("broker-config")
        for name in ["passwd", "acl"] {
            try FileManager.default.copyItem(
                at: source.appendingPathComponent(name),
                to: copy.appendingPathComponent(name)
            )
        }
        let config = try String(contentsOf: source.appendingPathComponent("mosquitto.conf"), encoding: .utf8)
        var lines = config.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines = lines.map { line in
            if line.hasPrefix("autosave_on_changes ") { return "autosave_on_changes false" }
            if line.hasPrefix("autosave_interval ") { return "autosave_interval 1800" }
            return line
        }
        #expect(lines.contains("autosave_on_changes false"), "broker/mosquitto.conf no longer sets autosave_on_changes")
        try lines.joined(separator: "\n").write(to: copy.appendingPathComponent("mosquitto.conf"), atomically: true, encoding: .utf8)
        return copy
    }

    @Test("10,000 participants in one process: all subscribe, all hand off at shutdown within the budget")
    func tenThousandLabels() async throws {
        let configDirectory = try Self.timeSavedBrokerConfig()
        defer { try? FileManager.default.removeItem(at: configDirectory) }
        try await withMosquittoBroker(configDirectory: configDirectory) { broker in
            let run = UUID().uuidString.prefix(8)
            let labels = try (0..<Self.participants).map { try HandoffLabel("scale/\(run)/\($0)") }
            let counters = labels.enumerated().map { TestCounter(label: $1, count: $0) }
            var configuration = try MQTTConfiguration(url: broker.plainURL)
            configuration.shutdownTimeout = .seconds(1)
            let transport = try await MQTTHandoffTransport.connect(configuration: configuration)
            let clock = ContinuousClock()
            let start = clock.now
            let running = await RunningService.start(
                HandoffService(
                    transport: transport,
                    participants: counters,
                    configuration: .init(shutdownBudget: .seconds(10))
                )
            )
            let startup = start.duration(to: clock.now)
            let report = try await running.stop()
            await transport.shutdown()
            print("scale: \(Self.participants) participants subscribed in \(startup), handed off in \(report.duration)")
            #expect(report.handedOff.count == Self.participants)
            #expect(report.failures.count == 0)
            #expect(report.duration < .seconds(10))
        }
    }
}
