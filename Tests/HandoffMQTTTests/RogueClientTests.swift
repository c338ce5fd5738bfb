import Crypto
import Foundation
import Handoff
import HandoffTestKit
import HandoffTestSupport
import MosquittoClient
import MosquittoTestKit
import Testing

@testable import HandoffMQTT

/// A plain MQTT client as the attacker on the handoff topics (docs/PROTOCOL.md §10): forged envelopes, bare and forged
/// clears, tampered ciphertext; and key rotation across a rolling deploy.
@Suite("Rogue clients on the handoff topics", .timeLimit(.minutes(2)))
struct RogueClientTests {
    static let secret1 = Data((0..<32).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) })
    static let secret2 = Data((0..<32).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) })

    static func keys(write: (String, Data), read: [(String, Data)] = [], encrypts: Bool = false) throws -> HandoffKeySet {
        try HandoffKeySet(
            writingKey: HandoffKey(id: write.0, secret: write.1), readingKeys: read.map { try HandoffKey(id: $0.0, secret: $0.1) },
            encrypts: encrypts
        )
    }

    static func options(_ keys: HandoffKeySet?) -> MQTTHandoffTransport.Options {
        MQTTHandoffTransport.Options(willDelay: nil, livenessLease: nil, keys: keys)
    }

    /// The attacker: a plain client, no handoff library on its side.
    static func attack(_ broker: MosquittoBroker, _ body: (MQTTClient) async throws -> Void) async throws {
        try await MQTTClient.withConnection(MQTTConfiguration(host: broker.host, port: broker.plainPort), body)
    }

    /// The retained message at `topic`, read with a plain client up to an ordering marker.
    static func retained(_ broker: MosquittoBroker, _ topic: String) async throws -> MQTTMessage? {
        try await MQTTClient.withConnection(MQTTConfiguration(host: broker.host, port: broker.plainPort)) { client in
            let messages = client.messages()
            let marker = "marker/\(UUID().uuidString)"
            try await client.subscribe(topic, options: MQTTSubscribeOptions(qos: .atLeastOnce))
            try await client.subscribe(marker, options: MQTTSubscribeOptions(qos: .atLeastOnce))
            try await client.publish(marker, payload: Data("x".utf8), qos: .atLeastOnce)
            var found: MQTTMessage?
            for await message in messages {
                if message.topic == marker { break }
                if message.topic == topic, !message.payload.isEmpty { found = message }
            }
            return found
        }
    }

    static func tally(_ count: Int) -> Tally { Tally(count: count, note: "genuine") }

    @Test("a forged envelope is dead-lettered as signature-invalid, a genuine one is merged")
    func forgedEnvelopeRefused() async throws {
        try await withMosquittoBroker { broker in
            let label = uniqueLabel("forged")
            let keys = try Self.keys(write: ("k1", Self.secret1))
            let impostor = try Self.keys(write: ("k1", Self.secret2))
            let unsigned = makeEnvelope(label, from: HandoffOrigin(instance: "attacker"), data: #"{"count":1000,"note":"forged"}"#)
            let wronglySigned = try impostor.seal(
                makeEnvelope(label, from: HandoffOrigin(instance: "attacker"), data: #"{"count":2000,"note":"forged"}"#))
            try await withTransport(broker, options: Self.options(keys)) { predecessor in
                _ = try await HandoffChannel<Tally>(label: label, transport: predecessor).initiate(Self.tally(7))
            }
            try await Self.attack(broker) { attacker in
                let topics = try HandoffTopics(prefix: "handoff")
                for envelope in [unsigned, wronglySigned] {
                    try await attacker.publish(
                        topics.handoff(label, id: envelope.id.rawValue), payload: envelope.encoded(), qos: .atLeastOnce, retain: true)
                }
            }
            try await withTransport(broker, options: Self.options(keys)) { successor in
                let channel = HandoffChannel<Tally>(label: label, transport: successor)
                let notices = NoticeRecorder(try await channel.subscribe())
                let batch = try await channel.complete()
                #expect(batch.handoffs.map(\.state) == [Self.tally(7)])
                #expect(
                    await notices.wait { notices, _ in
                        notices.count { if case .rejected(let rejection) = $0 { rejection.reason == .signatureInvalid } else { false } }
                            == 2
                    })
                let letters = try await successor.deadLetters(label, timeout: .seconds(10))
                #expect(Set(letters.map(\.id)) == [unsigned.id.rawValue, wronglySigned.id.rawValue])
                #expect(letters.allSatisfy { $0.reason == .signatureInvalid })
                #expect(letters.first { $0.id == unsigned.id.rawValue }?.payload == unsigned.encoded(), "the dead letter is verbatim")
            }
        }
    }

    /// Clears that are not claims, keyed or not: a participant that saw the handoff restores it, so a successor that
    /// starts after the attack still merges it, exactly once.
    @Test("bare and forged clears do not lose a handoff a participant had seen", arguments: [false, true])
    func clearsAreRepaired(keyed: Bool) async throws {
        try await withMosquittoBroker { broker in
            let label = uniqueLabel("cleared")
            let keys = keyed ? try Self.keys(write: ("k1", Self.secret1)) : nil
            // Unkeyed, a clear naming a made-up instance is a valid claim (nothing can tell it apart): only bare clears.
            let attacks: [[MQTTUserProperty]] =
                keyed
                ? [
                    [], [MQTTUserProperty(HandoffProperty.claimBy, "made-up")],
                    [
                        MQTTUserProperty(HandoffProperty.claimBy, "made-up"),
                        MQTTUserProperty(HandoffProperty.claimSignature, "hmac-sha256:k1:" + String(repeating: "0", count: 64)),
                    ],
                ]
                : [[]]
            try await withTransport(broker, options: Self.options(keys)) { watcher in
                let watching = HandoffChannel<Tally>(label: label, transport: watcher)
                let notices = NoticeRecorder(try await watching.subscribe())
                var ids: [HandoffID] = []
                try await withTransport(broker, options: Self.options(keys)) { predecessor in
                    let channel = HandoffChannel<Tally>(label: label, transport: predecessor)
                    for (index, _) in attacks.enumerated() { ids.append(try await channel.initiate(Self.tally(index)).id) }
                }
                #expect(
                    await notices.wait { notices, _ in notices.count { if case .available = $0 { true } else { false } } >= attacks.count })
                let topics = watcher.topics
                try await Self.attack(broker) { attacker in
                    for (id, properties) in zip(ids, attacks) {
                        try await attacker.publish(
                            topics.handoff(label, id: id.rawValue), payload: Data(), qos: .atLeastOnce, retain: true,
                            properties: MQTTPublishProperties(userProperties: properties)
                        )
                    }
                }
                // Each is back on the broker, marked as a restore by the watcher.
                for id in ids {
                    #expect(
                        await eventually(upTo: .seconds(5)) {
                            (try? await Self.retained(broker, topics.handoff(label, id: id.rawValue)))??.properties.userProperty(
                                HandoffProperty.restoreBy)
                                == watcher.origin.instance
                        }, "handoff \(id) was not restored")
                }
                // A successor that starts after the attack finds and merges all of them; the watcher, claiming later, none.
                let merged = try await withTransport(broker, options: Self.options(keys)) { late in
                    let channel = HandoffChannel<Tally>(label: label, transport: late)
                    _ = try await channel.subscribe()
                    return try await channel.complete().handoffs.map(\.state.count)
                }
                #expect(merged.sorted() == Array(0..<attacks.count))
                #expect(await eventually { (try? await watcher.pending(label))?.isEmpty ?? false })
                #expect(try await watching.complete().handoffs.isEmpty)
            }
        }
    }

    /// A restore that reaches the broker after the round's verdict (here forged by the attacker, as the restorer's or as
    /// nobody's) is claimed `already-merged` at once, by the winner and by the restorer it names: no second merge.
    @Test("a stale restore is claimed already-merged, never merged twice", arguments: [true, false])
    func staleRestore(namingTheWatcher: Bool) async throws {
        try await withMosquittoBroker { broker in
            let label = uniqueLabel("stale")
            let observer = try await RoundObserver.start(
                configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort), prefix: Self.options(nil).prefix)
            try await withTransport(broker, options: Self.options(nil)) { watcher in
                let watching = NoticeRecorder(try await HandoffChannel<Tally>(label: label, transport: watcher).subscribe())
                let envelope = try await withTransport(broker, options: Self.options(nil)) { predecessor in
                    try await HandoffChannel<Tally>(label: label, transport: predecessor).initiate(Self.tally(1))
                }
                #expect(await watching.wait { notices, _ in !notices.isEmpty })
                let topic = watcher.topics.handoff(label, id: envelope.id.rawValue)
                let payload = try #require(try await Self.retained(broker, topic)).payload
                try await withTransport(broker, options: Self.options(nil)) { winner in
                    let channel = HandoffChannel<Tally>(label: label, transport: winner)
                    _ = try await channel.subscribe()
                    #expect(try await channel.complete().handoffs.map(\.state) == [Self.tally(1)])
                    let restorer = namingTheWatcher ? watcher.origin.instance : "somebody-else"
                    try await Self.attack(broker) { attacker in
                        try await attacker.publish(
                            topic, payload: payload, qos: .atLeastOnce, retain: true,
                            properties: MQTTPublishProperties(userProperties: [MQTTUserProperty(HandoffProperty.restoreBy, restorer)])
                        )
                    }
                    // Decided by a claim of the winner or of the restorer (both `already-merged`), and cleared from the broker.
                    let voiders: Set<String> = [winner.origin.instance, watcher.origin.instance]
                    #expect(
                        await eventually {
                            guard let verdict = observer.winner(label, envelope.id.rawValue), voiders.contains(verdict) else {
                                return false
                            }
                            return (try? await Self.retained(broker, topic)) == .some(nil)
                        })
                    #expect(try await channel.complete().handoffs.isEmpty, "the winner merged the stale restore")
                }
                let late = try await withTransport(broker, options: Self.options(nil)) { late in
                    let channel = HandoffChannel<Tally>(label: label, transport: late)
                    _ = try await channel.subscribe()
                    return try await channel.complete().handoffs.count
                }
                #expect(late == 0)
            }
            await observer.stop()
        }
    }

    @Test("a clear of a live participant's checkpoint is repaired by that participant: its next checkpoint is written even if unchanged")
    func clearedCheckpointIsRewritten() async throws {
        try await withMosquittoBroker { broker in
            let label = uniqueLabel("checkpoint")
            var options = Self.options(try Self.keys(write: ("k1", Self.secret1)))
            options.willDelay = .seconds(1)
            try await withTransport(broker, options: options) { owner in
                let channel = HandoffChannel<Int>(label: label, transport: owner)
                _ = try await channel.subscribe()
                #expect(try await channel.checkpoint(5) == .written)
                #expect(try await channel.checkpoint(5) == .unchanged)
                let topic = owner.topics.checkpoint(label, instance: owner.origin.instance)
                try await Self.attack(broker) { attacker in
                    try await attacker.publish(topic, payload: Data(), qos: .atLeastOnce, retain: true)
                }
                #expect(await eventually { (try? await channel.checkpoint(5)) == .written })
                #expect(try await Self.retained(broker, topic) != nil)
                #expect(!owner.isFenced(label), "a clear that is not a claim fenced the owner")
                // A clear naming a made-up claimer, without a valid signature, does not fence it either.
                try await Self.attack(broker) { attacker in
                    try await attacker.publish(
                        topic, payload: Data(), qos: .atLeastOnce, retain: true,
                        properties: MQTTPublishProperties(userProperties: [MQTTUserProperty(HandoffProperty.claimBy, "made-up")])
                    )
                }
                #expect(await eventually { (try? await channel.checkpoint(5)) == .written })
                #expect(!owner.isFenced(label), "a forged claim of its checkpoint fenced the owner")
            }
        }
    }

    @Test("an encrypted handoff hides its state on the broker; tampered ciphertext is dead-lettered, and the original restored")
    func tamperedCiphertext() async throws {
        try await withMosquittoBroker { broker in
            let label = uniqueLabel("encrypted")
            let keys = try Self.keys(write: ("k1", Self.secret1), encrypts: true)
            try await withTransport(broker, options: Self.options(keys)) { watcher in
                let watching = HandoffChannel<Tally>(label: label, transport: watcher)
                let notices = NoticeRecorder(try await watching.subscribe())
                let id = try await withTransport(broker, options: Self.options(keys)) { predecessor in
                    try await HandoffChannel<Tally>(label: label, transport: predecessor).initiate(Tally(count: 5, note: "secret-token")).id
                }
                let topic = watcher.topics.handoff(label, id: id.rawValue)
                let original = try #require(try await Self.retained(broker, topic)).payload
                #expect(original.range(of: Data("secret-token".utf8)) == nil, "the state is readable on the broker")
                #expect(await notices.wait { notices, _ in notices.contains { if case .available = $0 { true } else { false } } })
                // Flip a ciphertext byte and fix up the header's sha256, as an attacker who read the envelope would.
                var tampered = try HandoffEnvelope.decode(original)
                var data = tampered.data
                data[data.startIndex] ^= 0x01
                let (signature, encryption, createdAt) = (tampered.signature, tampered.encryption, tampered.createdAtText)
                tampered.data = data
                (tampered.signature, tampered.encryption, tampered.createdAtText) = (signature, encryption, createdAt)
                let tamperedPayload = tampered.encoded()
                try await Self.attack(broker) { attacker in
                    try await attacker.publish(topic, payload: tamperedPayload, qos: .atLeastOnce, retain: true)
                }
                #expect(
                    await notices.wait { notices, _ in
                        notices.contains { if case .rejected(let rejection) = $0 { rejection.reason == .signatureInvalid } else { false } }
                    })
                let letters = try await watcher.deadLetters(label, timeout: .seconds(10))
                #expect(letters.map(\.payload) == [tamperedPayload])
                #expect(await eventually(upTo: .seconds(5)) { (try? await Self.retained(broker, topic))??.payload == original })
                let batch = try await watching.complete()
                #expect(batch.handoffs.map(\.state) == [Tally(count: 5, note: "secret-token")])
            }
        }
    }

    /// Step 1 of the rotation (new key read-only everywhere) is deploy A → B, step 2 (new key writing) B → C, step 3
    /// (old key dropped) C → D. Each deploy hands its state to the next: nothing is refused or lost.
    @Test("key rotation across rolling deploys hands off without loss")
    func keyRotation() async throws {
        try await withMosquittoBroker { broker in
            let label = uniqueLabel("rotation")
            let k1 = ("k1", Self.secret1)
            let k2 = ("k2", Self.secret2)
            let deploys = [
                try Self.keys(write: k1),
                try Self.keys(write: k1, read: [k2]),
                try Self.keys(write: k2, read: [k1]),
                try Self.keys(write: k2),
            ]
            var state = Tally(count: 1, note: "deploy 0")
            try await withTransport(broker, options: Self.options(deploys[0])) { first in
                _ = try await HandoffChannel<Tally>(label: label, transport: first).initiate(state)
            }
            for (index, keys) in deploys.enumerated().dropFirst() {
                try await withTransport(broker, options: Self.options(keys)) { next in
                    let channel = HandoffChannel<Tally>(label: label, transport: next)
                    _ = try await channel.subscribe()
                    let batch = try await channel.complete()
                    #expect(batch.handoffs.map(\.state) == [state], "deploy \(index)")
                    #expect(batch.rejected.isEmpty && batch.deferred.isEmpty, "deploy \(index)")
                    state = Tally(count: state.count + 1, note: "deploy \(index)")
                    _ = try await channel.initiate(state)
                }
            }
            // An old participant (k1 only) meeting the new key leaves the handoff in place for one that holds it.
            try await withTransport(broker, options: Self.options(deploys[0])) { old in
                let channel = HandoffChannel<Tally>(label: label, transport: old)
                let notices = NoticeRecorder(try await channel.subscribe())
                #expect(
                    await notices.wait { notices, _ in
                        notices.contains {
                            if case .rejected(let rejection) = $0 {
                                rejection.reason == .unknownKey && rejection.disposition == .leftInPlace
                            } else {
                                false
                            }
                        }
                    })
                #expect(try await channel.complete().handoffs.isEmpty)
            }
            try await withTransport(broker, options: Self.options(deploys[3])) { last in
                let channel = HandoffChannel<Tally>(label: label, transport: last)
                _ = try await channel.subscribe()
                #expect(try await channel.complete().handoffs.map(\.state) == [state])
            }
        }
    }
}
