import Foundation
import Handoff
import HandoffMQTT
import HandoffTestSupport
import MosquittoClient
import MosquittoTestKit
import Testing

/// What tenant-a hands off in these tests.
private struct Ledger: Codable, Sendable, Equatable {
    var readings: Int
    var owner: String
}

/// The tenant users of broker/acl against a real mosquitto, on its authenticated listener: each tenant may publish
/// and read only under its own prefix (broker/README.md, "Restricting who may publish under a prefix").
///
/// With `max_queued_messages 0` (broker/mosquitto.conf), mosquitto 2.0.16–2.0.21 and Debian 12's 2.0.11 close a
/// client's connection right after refusing one of its publishes (mosquitto issue #3244); the client reconnects. Each
/// client that was refused here publishes under its own prefix until the broker acknowledges it (``settle(_:on:)``)
/// before it is shut down, so that no shutdown meets a connection that is just being lost.
@Suite("broker/acl: a tenant publishes and reads only under its own prefix", .timeLimit(.minutes(2)))
struct ACLTests {
    @Test(
        "tenant-a hands off under tenant-a/; tenant-b's forged handoffs, clears, claims and statuses there are refused, it reads nothing there, and the handoff is merged intact"
    )
    func otherTenantIsRefused() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("ledger")
            let topics = try HandoffTopics(prefix: "tenant-a")
            let handedOff = Ledger(readings: 300, owner: "tenant-a")

            let predecessor = try await MQTTHandoffTransport.connect(
                configuration: broker.tenant("tenant-a"), options: MQTTHandoffTransport.Options(prefix: "tenant-a")
            )
            let envelope: HandoffEnvelope
            do {
                envelope = try await HandoffChannel<Ledger>(label: label, transport: predecessor).initiate(handedOff)
                let realTopic = topics.handoff(label, id: envelope.id.rawValue)

                let forger = HandoffOrigin(instance: "forged-by-tenant-b")
                let forgedState = try JSONEncoder().encode(Ledger(readings: 1_000_000, owner: "tenant-b"))
                let forged = HandoffEnvelope(label: label, vsn: 1, origin: forger, data: forgedState)
                let replacement = HandoffEnvelope(id: envelope.id, label: label, vsn: 1, origin: forger, data: forgedState)
                let claim = MQTTPublishProperties(userProperties: [
                    MQTTUserProperty("handoff-claim-by", forger.instance), MQTTUserProperty("handoff-claim-purpose", "merge"),
                ])
                let attacks: [(what: String, topic: String, payload: Data, properties: MQTTPublishProperties)] = [
                    ("a forged handoff", topics.handoff(label, id: forged.id.rawValue), forged.encoded(), .none),
                    ("a forged envelope over the waiting handoff", realTopic, replacement.encoded(), .none),
                    ("a bare zero-length clear of the waiting handoff", realTopic, Data(), .none),
                    ("a claim of the waiting handoff", realTopic, Data(), claim),
                    ("a dead letter", topics.deadLetter(label, id: forged.id.rawValue), forged.encoded(), .none),
                    ("a checkpoint", topics.checkpoint(label, instance: forger.instance), forged.encoded(), .none),
                    (
                        "a death notice of the live predecessor", topics.instance(predecessor.origin.instance),
                        deadStatus(predecessor.origin.instance), .none
                    ),
                ]
                try await MQTTClient.withConnection(broker.tenant("tenant-b")) { attacker in
                    for attack in attacks {
                        let refusal = await #expect(throws: MQTTError.self, "\(attack.what) was not refused") {
                            try await attacker.publish(
                                attack.topic, payload: attack.payload, qos: .atLeastOnce, retain: true, properties: attack.properties)
                        }
                        #expect(refusal?.code == .publishRefused, "\(attack.what): \(String(describing: refusal))")
                        #expect(refusal?.reasonCode == 0x87, "\(attack.what): not authorized expected")
                        // The refusal is the ACL's: the same user publishes under its own prefix.
                        try await settle(attacker, on: "tenant-b/probe")
                    }
                    // Nor can it read tenant-a's state: mosquitto 2.0 accepts the subscription and delivers nothing.
                    let read = try await retainedMessages(attacker, on: "tenant-a/#", marker: "tenant-b/probe")
                    #expect(read.map(\.topic) == [])
                }

                // What tenant-a sees under its prefix: its handoff byte for byte, and the predecessor's own birth.
                try await MQTTClient.withConnection(broker.tenant("tenant-a")) { observer in
                    let retained = try await retainedMessages(observer, on: "tenant-a/#", marker: "tenant-a/probe")
                    let stored = retained.filter { !$0.topic.hasPrefix("tenant-a/instances/") }
                    #expect(stored.map(\.topic) == [realTopic])
                    #expect(stored.first?.payload == envelope.encoded())
                    let statuses = retained.filter { $0.topic == topics.instance(predecessor.origin.instance) }
                    let status = try #require(statuses.first, "the predecessor's birth is not retained")
                    let fields = try #require(try JSONSerialization.jsonObject(with: status.payload) as? [String: Any])
                    #expect(fields["state"] as? String == "online")
                    #expect(fields["instance"] as? String == predecessor.origin.instance)
                }
            } catch {
                await predecessor.shutdown()
                throw error
            }
            await predecessor.shutdown()

            let successor = try await MQTTHandoffTransport.connect(
                configuration: broker.tenant("tenant-a"), options: MQTTHandoffTransport.Options(prefix: "tenant-a")
            )
            do {
                let channel = HandoffChannel<Ledger>(label: label, transport: successor)
                _ = try await channel.subscribe()
                let batch = try await channel.complete()
                #expect(batch.rejected.isEmpty, "\(batch.rejected)")
                #expect(batch.deferred.isEmpty, "\(batch.deferred)")
                #expect(batch.interruption == nil)
                let claimed = try #require(batch.handoffs.first)
                #expect(batch.handoffs.count == 1)
                #expect(claimed.id == envelope.id)
                #expect(claimed.origin.instance == predecessor.origin.instance)
                #expect(claimed.state == handedOff)
                let merged = try batch.merged(
                    into: Ledger(readings: 5, owner: "tenant-a"),
                    using: FoldStrategy { ledger, handoff in Ledger(readings: ledger.readings + handoff.state.readings, owner: ledger.owner)
                    }
                )
                #expect(merged == Ledger(readings: 305, owner: "tenant-a"))
                #expect(try await successor.deadLetters(label, timeout: .seconds(10)).isEmpty)
            } catch {
                await successor.shutdown()
                throw error
            }
            await successor.shutdown()

            // tenant-a's own claim was allowed: nothing waits any more.
            try await MQTTClient.withConnection(broker.tenant("tenant-a")) { observer in
                let waiting = try await retainedMessages(observer, on: "tenant-a/handoffs/#", marker: "tenant-a/probe")
                #expect(waiting.map(\.topic) == [])
            }
        }
    }

    @Test(
        "tenant-a may publish under neither tenant-b/ nor the default prefix handoff/; a participant configured with tenant-b's prefix cannot hand off"
    )
    func ownPrefixOnly() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("ledger")
            let envelope = HandoffEnvelope(label: label, vsn: 1, origin: HandoffOrigin(instance: "tenant-a-writer"), data: Data("{}".utf8))
            try await MQTTClient.withConnection(broker.tenant("tenant-a")) { client in
                for prefix in ["tenant-b", "handoff"] {
                    let topic = try HandoffTopics(prefix: prefix).handoff(label, id: envelope.id.rawValue)
                    let refusal = await #expect(throws: MQTTError.self, "publishing on \(topic) was not refused") {
                        try await client.publish(topic, payload: envelope.encoded(), qos: .atLeastOnce, retain: true)
                    }
                    #expect(refusal?.code == .publishRefused)
                    #expect(refusal?.reasonCode == 0x87)
                    try await settle(client, on: "tenant-a/probe")
                }
            }

            // Without checkpoints a participant writes nothing at connect, so the refusal comes with its first handoff.
            // (With them, the default, connect itself throws: its first write, an ordering marker, is refused.)
            var options = MQTTHandoffTransport.Options(prefix: "tenant-b")
            options.willDelay = nil
            let misconfigured = try await MQTTHandoffTransport.connect(configuration: broker.tenant("tenant-a"), options: options)
            let refusal = await #expect(throws: MQTTError.self, "a handoff under tenant-b/ was not refused") {
                try await HandoffChannel<Ledger>(label: label, transport: misconfigured).initiate(Ledger(readings: 1, owner: "tenant-a"))
            }
            #expect(refusal?.code == .publishRefused, "\(String(describing: refusal))")
            #expect(refusal?.reasonCode == 0x87)
            try await settle(misconfigured.client, on: "tenant-a/probe")
            await misconfigured.shutdown()
        }
    }

    @Test("under MQTT 3.1.1 nothing tells the client: its publish under another tenant's prefix is acknowledged, and not stored")
    func silentUnderMQTT311() async throws {
        try await withMosquittoBroker { broker in
            var configuration = broker.tenant("tenant-b")
            configuration.protocolVersion = .v311
            try await MQTTClient.withConnection(configuration) { client in
                try await client.publish("tenant-a/handoffs/ledger/forged", payload: Data("forged".utf8), qos: .atLeastOnce, retain: true)
                try await settle(client, on: "tenant-b/probe")
            }
            try await MQTTClient.withConnection(broker.tenant("tenant-a")) { observer in
                let retained = try await retainedMessages(observer, on: "tenant-a/#", marker: "tenant-a/probe")
                #expect(retained.map(\.topic) == [])
            }
        }
    }

    @Test("a Will under another tenant's prefix is dropped when the broker sends it; the tenant's own is published")
    func foreignWillIsDropped() async throws {
        try await withMosquittoBroker { broker in
            let topics = try HandoffTopics(prefix: "tenant-a")
            // A plain client's Will (no delay), sent when its connection ends without DISCONNECT. A second client that
            // connects with the same client id ends the first connection: mosquitto sends (or refuses) the Will before
            // it acknowledges the second CONNECT, so nothing depends on timing.
            func willIsPublished(by user: String, instance: String) async throws -> Bool {
                var configuration = broker.tenant(user)
                configuration.clientID = "will-\(user)-\(UUID().uuidString.prefix(8))"
                configuration.reconnect = .init(initialDelay: .seconds(60), maximumDelay: .seconds(60))  // stays away once taken over
                let status = deadStatus(instance)
                configuration.will = MQTTConfiguration.Will(
                    topic: topics.instance(instance), payload: status, qos: .atLeastOnce, retain: true)
                let dying = try MQTTClient(configuration: configuration)
                try await dying.connect()
                let events = dying.events()
                var taker = configuration
                taker.will = nil
                try await MQTTClient.withConnection(taker) { _ in }
                // Shut down only once the client has handled the loss of its connection.
                let lost = try await withDeadline(.seconds(10), operation: "see the connection taken over") {
                    for await event in events { if case .disconnected = event { return true } }
                    return false
                }
                await dying.shutdown()
                #expect(lost)
                return try await MQTTClient.withConnection(broker.tenant("tenant-a")) { observer in
                    let retained = try await retainedMessages(observer, on: topics.instance(instance), marker: "tenant-a/probe")
                    return retained.map(\.payload) == [status]
                }
            }
            let own = try await willIsPublished(by: "tenant-a", instance: "own-instance")
            #expect(own, "tenant-a's own Will was not published")
            let foreign = try await willIsPublished(by: "tenant-b", instance: "victim-instance")
            #expect(!foreign, "tenant-b's Will under tenant-a/ was published")
        }
    }
}

extension MosquittoBroker {
    /// A connection to the authenticated listener as a tenant user of broker/passwd (its password: `<user>-secret`).
    fileprivate func tenant(_ user: String) -> MQTTConfiguration {
        MQTTConfiguration(
            host: host, port: authenticatedPort, username: user, password: "\(user)-secret",
            reconnect: .init(initialDelay: .seconds(1), maximumDelay: .seconds(1))
        )
    }
}

/// A death notice of `instance` (docs/PROTOCOL.md §9.1): what would release its checkpoints to successors.
private func deadStatus(_ instance: String) -> Data {
    Data(#"{"format":"swift-handoff-instance/1","incarnation":1,"instance":"\#(instance)","released":1,"state":"dead"}"#.utf8)
}

/// Publishes (QoS 1) on `topic`, which the client may write, until the broker acknowledges it, so that the client is
/// connected when this returns: after a refused publish the broker may have closed the connection (see ``ACLTests``),
/// and a publish made before the client noticed fails with `connectionLost`; one made after waits for the reconnect.
private func settle(_ client: MQTTClient, on topic: String) async throws {
    try await withDeadline(.seconds(20), operation: "publish on \(topic) until acknowledged") {
        while true {
            do {
                try await client.publish(topic, payload: Data("settle".utf8), qos: .atLeastOnce)
                return
            } catch let error as MQTTError where error.code == .connectionLost {
                continue
            }
        }
    }
}

/// The retained messages on `filter` that the broker lets `client` read: those it sends for the subscription before a
/// marker that `client` publishes on `marker` afterwards (mosquitto sends a subscription's retained messages before any
/// message it processes later, docs/PROTOCOL.md §2, A3). Waits at most 10 s for the marker.
private func retainedMessages(_ client: MQTTClient, on filter: String, marker: String) async throws -> [MQTTMessage] {
    try await withDeadline(.seconds(10), operation: "read \(filter) up to a marker") {
        let messages = client.messages()
        do {
            _ = try await client.subscribe(filter, options: MQTTSubscribeOptions(qos: .atLeastOnce))
        } catch let error as MQTTError where error.code == .subscriptionRefused {
            // mosquitto 2.0 does not check subscriptions against the ACL; a broker that does refuses this one.
        }
        _ = try await client.subscribe(marker, options: MQTTSubscribeOptions(qos: .atLeastOnce))
        let nonce = Data(UUID().uuidString.utf8)
        try await client.publish(marker, payload: nonce, qos: .atLeastOnce)
        var received: [MQTTMessage] = []
        var sawMarker = false
        for await message in messages {
            if message.topic == marker, message.payload == nonce {
                sawMarker = true
                break
            }
            if message.topic != marker { received.append(message) }
        }
        guard sawMarker else { throw MQTTError(.connectionLost, "the connection ended before the marker on \(marker) came back") }
        try? await client.unsubscribe(filter)
        try? await client.unsubscribe(marker)
        return received
    }
}
