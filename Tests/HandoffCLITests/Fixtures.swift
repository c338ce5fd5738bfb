import Foundation
import Handoff
import HandoffMQTT
import Logging
import MosquittoClient
import MosquittoTestKit

/// A private broker, a prefix of the test's own, and the environment that points `handoff` at both.
struct Fixture: Sendable {
    let broker: MosquittoBroker
    let topics: HandoffTopics
    var environment: [String: String] { ["HANDOFF_BROKER_URL": broker.plainURL, "HANDOFF_PREFIX": topics.prefix, "HANDOFF_TIMEOUT": "10"] }

    /// A connected raw client (clean session) to seed and inspect the broker.
    func client() async throws -> MQTTClient {
        let client = try MQTTClient(configuration: try MQTTConfiguration(url: broker.plainURL), logger: quietLogger)
        try await client.connect()
        return client
    }

    /// A library participant (handoffs only, no Will) under the fixture's prefix.
    func participant(_ instance: String = "test-\(UUID().uuidString.prefix(8).lowercased())") async throws -> MQTTHandoffTransport {
        try await MQTTHandoffTransport.connect(
            configuration: try MQTTConfiguration(url: broker.plainURL),
            options: .init(prefix: topics.prefix, willDelay: nil, livenessLease: nil),
            origin: HandoffOrigin(instance: instance, host: "test-host", pid: 4242),
            logger: quietLogger
        )
    }

    /// Publishes `payload` retained on `topic` and waits for the acknowledgement.
    func retain(_ topic: String, _ payload: Data, properties: MQTTPublishProperties = .none) async throws {
        let client = try await client()
        try await client.publish(topic, payload: payload, qos: .atLeastOnce, retain: true, properties: properties)
        await client.shutdown()
    }
}

/// Runs `body` with a fresh broker and prefix.
func withFixture<T>(_ body: (Fixture) async throws -> T) async throws -> T {
    try await withMosquittoBroker { broker in
        try await body(Fixture(broker: broker, topics: try HandoffTopics(prefix: "cli-test-\(UUID().uuidString.prefix(8))")))
    }
}

/// An envelope of a JSON state.
func envelope(_ label: HandoffLabel, json: String, vsn: Int = 1, instance: String = "predecessor-1", incarnation: Int? = nil)
    -> HandoffEnvelope
{
    HandoffEnvelope(
        label: label, vsn: vsn, origin: HandoffOrigin(instance: instance, host: "pod-7", pid: 41), contentType: "application/json",
        data: Data(json.utf8), incarnation: incarnation
    )
}

/// An instance status of PROTOCOL.md §9.1.
func status(_ instance: String, incarnation: Int, state: String, released: Int) -> Data {
    Data(
        #"{"format":"swift-handoff-instance/1","incarnation":\#(incarnation),"instance":"\#(instance)","released":\#(released),"state":"\#(state)"}"#
            .utf8)
}

/// The user properties of a dead letter (PROTOCOL.md §7).
func deadLetterProperties(_ reason: String, detail: String, topic: String) -> MQTTPublishProperties {
    MQTTPublishProperties(userProperties: [
        MQTTUserProperty("handoff-dead-reason", reason), MQTTUserProperty("handoff-dead-detail", detail),
        MQTTUserProperty("handoff-dead-by", "successor-9"), MQTTUserProperty("handoff-dead-at", "2026-11-25T06:00:00.123Z"),
        MQTTUserProperty("handoff-dead-topic", topic),
    ])
}

let quietLogger = Logger(label: "cli-tests", factory: { _ in SwiftLogNoOpLogHandler() })
