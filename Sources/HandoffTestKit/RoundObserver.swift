import Foundation
import Handoff
import HandoffClaims
import HandoffMQTT
import MosquittoClient
import Synchronization

/// Watches the handoff rounds of a prefix from outside, for tests: a plain MQTT client subscribed to
/// `{prefix}/handoffs/+/+` applies the claim rule (docs/PROTOCOL.md §5, with §10.5 when keyed) to what the broker
/// delivers, through a ``ClaimStateMachine`` of its own that never claims, so that a test can ask who won a handoff
/// in the broker's order without asking the participants.
///
/// Subscribe it before the rounds it observes are decided: like any late subscriber, it never sees a round cleared
/// before it subscribed.
package final class RoundObserver: Sendable {
    private let client: MQTTClient
    private let topics: HandoffTopics
    private let rounds: Rounds
    private let reader: Task<Void, Never>

    /// The observer's machine, shared with the task that feeds it.
    private final class Rounds: Sendable {
        let machine: Mutex<ClaimStateMachine>
        init(_ machine: ClaimStateMachine) { self.machine = Mutex(machine) }
    }

    private init(client: MQTTClient, topics: HandoffTopics, keys: HandoffKeySet?) {
        let rounds = Rounds(ClaimStateMachine(instance: "observer-\(UUID().uuidString.lowercased())", keys: keys, trackedBytesLimit: .max))
        let messages = client.messages()
        self.client = client
        self.topics = topics
        self.rounds = rounds
        self.reader = Task {
            for await message in messages {
                guard let (level, id) = topics.parseHandoff(message.topic) else { continue }
                let properties = message.properties
                rounds.machine.withLock { machine in
                    guard let label = machine.label(atLevel: level) else { return }
                    let id = String(id)
                    if message.payload.isEmpty {
                        _ = machine.claimSeen(
                            label, key: id, topic: message.topic, claimer: properties.userProperty(HandoffProperty.claimBy),
                            purpose: properties.userProperty(HandoffProperty.claimPurpose),
                            signature: properties.userProperty(HandoffProperty.claimSignature)
                        )
                    } else if let envelope = try? HandoffEnvelope.read(
                        message.payload, topicLabel: label, topicID: id, keys: keys, maximumSize: .max)
                    {
                        _ = machine.handoffSeen(
                            label, id: id, envelope: envelope, payload: message.payload,
                            restoredBy: properties.userProperty(HandoffProperty.restoreBy), retained: message.retain, now: .now
                        )
                    }
                }
            }
        }
    }

    /// Connects to the broker of `configuration` and subscribes to the handoff rounds under `prefix`; `keys`: the
    /// prefix's key set, without which a signed claim is no verdict for keyed participants.
    package static func start(configuration: MQTTConfiguration, prefix: String, keys: HandoffKeySet? = nil) async throws -> RoundObserver {
        var configuration = configuration
        configuration.protocolVersion = .v5
        let topics = try HandoffTopics(prefix: prefix)
        let observer = RoundObserver(client: try MQTTClient(configuration: configuration), topics: topics, keys: keys)
        do {
            try await observer.client.connect()
            _ = try await observer.client.subscribe(topics.handoffsWildcard, options: MQTTSubscribeOptions(qos: .atLeastOnce))
        } catch {
            await observer.stop()
            throw error
        }
        return observer
    }

    /// The instance the first claim of the latest round of handoff `id` names, as this observer saw the broker's
    /// order; `nil` while that round is open (or was never seen).
    package func winner(_ label: HandoffLabel, _ id: String) -> String? {
        rounds.machine.withLock { $0.winner(label, id) }
    }

    /// The winner of handoff `id` once this observer has seen its verdict, waiting at most `limit` for it.
    package func winner(_ label: HandoffLabel, _ id: String, within limit: Duration) async -> String? {
        let deadline = ContinuousClock.now + limit
        while true {
            if let winner = winner(label, id) { return winner }
            guard ContinuousClock.now < deadline, (try? await Task.sleep(for: .milliseconds(10))) != nil else { return nil }
        }
    }

    package func stop() async {
        await client.shutdown()
        await reader.value
    }
}
