import Foundation
import Handoff
import HandoffTestKit
import HandoffTestSupport
import MosquittoClient
import MosquittoTestKit
import Testing

@testable import HandoffMQTT

/// Signed and encrypted handoffs between swift-handoff and interop/python (docs/PROTOCOL.md §10), with the Python
/// client's plain-MQTT attacker on the topics while both race.
@Suite("Signed handoffs between Swift and Python", .timeLimit(.minutes(3)))
struct PythonSigningTests {
    struct Attack: Decodable {
        struct Target: Decodable {
            var id: String
            var topic: String
        }
        var forged: [Target]
        var bareCleared: [Target]
        var forgedClaims: [Target]
    }

    @Test(
        "2 Python and 2 Swift keyed successors race for encrypted handoffs from both while an attacker forges and clears: each genuine one merged once, the forged one dead-lettered"
    )
    func keyedRaceUnderAttack() async throws {
        try await withPythonClient { broker, python in
            let secrets = (Data((0..<32).map { UInt8($0) }), Data((0..<32).map { UInt8(200 - $0) }))
            let keyFile = python.file("keys")
            try "k2 \(secrets.1.base64EncodedString())\nk1 \(secrets.0.base64EncodedString())\n".write(
                to: keyFile, atomically: true, encoding: .utf8)
            let keys = try HandoffKeySet(contentsOf: keyFile, encrypts: true)
            let label = try HandoffLabel("signed/race")
            let perSide = 10

            var expected: [String: RaceItem] = [:]
            let observer = try await python.observeRounds(keys: keys)
            let predecessor = try await python.connectTransport(keys: keys)
            let sender = HandoffChannel<RaceItem>(label: label, transport: predecessor, timeout: .seconds(30))
            for n in 0..<perSide {
                let item = RaceItem(source: "swift", n: n)
                expected[try await sender.initiate(item).id.rawValue] = item
            }
            let fromPython: PythonInitiated<RaceItem> = try await python.json(
                "initiate",
                [
                    "--keys", keyFile.path, "--encrypt", "--label", label.rawValue, "--data", #"{"source":"python","n":{i}}"#, "--count",
                    "\(perSide)",
                ])
            for handoff in fromPython.handoffs { expected[handoff.id] = handoff.data }

            // The racers subscribe and see everything; none claims before the attack is over.
            let go = python.file("go")
            let forgedCount = 1
            var racers: [PythonProcess] = []
            defer { for racer in racers { racer.terminate() } }
            for index in 0..<2 {
                racers.append(
                    try python.start(
                        "race",
                        [
                            "--keys", keyFile.path, "--label", label.rawValue, "--expect", "\(expected.count + forgedCount)", "--deadline",
                            "120",
                            "--claim-delay", "0", "--claim-jitter", "\(20 * (index + 1))",
                            "--ready-file", python.file("ready-\(index)").path, "--go-file", go.path,
                        ],
                        output: python.file("racer-\(index).json")
                    ))
            }
            var successors: [(transport: MQTTHandoffTransport, channel: HandoffChannel<RaceItem>)] = []
            for _ in 0..<2 {
                let transport = try await python.connectTransport(keys: keys)
                let channel = HandoffChannel<RaceItem>(label: label, transport: transport, timeout: .seconds(10))
                _ = try await channel.subscribe()
                successors.append((transport, channel))
            }
            for (index, racer) in racers.enumerated() { try await racer.waitForFile(python.file("ready-\(index)"), within: .seconds(30)) }

            // The attacker: a forged unsigned envelope, bare clears and clears naming a made-up claimer.
            let attack: Attack = try await python.json(
                "attack",
                [
                    "--label", label.rawValue, "--forge", "\(forgedCount)", "--bare-clear", "2", "--forged-claim", "2",
                    "--fake-claim-signature",
                ])
            #expect(attack.bareCleared.count == 2 && attack.forgedClaims.count == 2)
            // Every cleared handoff is back on the broker (restored by a Swift or a Python participant) before anyone claims.
            for target in attack.bareCleared + attack.forgedClaims {
                #expect(
                    await eventually(upTo: .seconds(10)) {
                        (try? await RogueClientTests.retained(broker, target.topic))??.properties.userProperty(HandoffProperty.restoreBy)
                            != nil
                    }, "\(target.id) was not restored")
            }
            try Data().write(to: go)

            let merges = Locked<[String: [SwiftMerge]]>([:])
            let interruptions = Locked<[String]>([])
            let workers = successors.map { successor in
                Task {
                    try await drainRace(
                        successor.channel, instance: successor.transport.origin.instance, into: merges, interruptions: interruptions)
                }
            }
            defer { for worker in workers { worker.cancel() } }
            var outcomes: [PythonRace<RaceItem>] = []
            for racer in racers { outcomes.append(try await racer.result(within: .seconds(130))) }
            _ = await eventually(upTo: .seconds(30)) { expected.keys.allSatisfy { observer.winner(label, $0) != nil } }
            // Whatever is left after the racers stopped, the Swift successors drain.
            for successor in successors {
                try await drainRace(
                    successor.channel, instance: successor.transport.origin.instance, into: merges, interruptions: interruptions)
            }

            var mergers: [String: [String]] = merges.withLock { $0 }.mapValues { $0.map(\.instance) }
            for outcome in outcomes {
                #expect(outcome.complete, "Python racer \(outcome.instance) saw \(outcome.handoffs.count) verdicts")
                for (id, entry) in outcome.handoffs where entry.merged {
                    mergers[id, default: []].append(outcome.instance)
                    #expect(entry.data == expected[id], "Python merged other data for \(id)")
                }
                for forged in attack.forged {
                    #expect(
                        outcome.handoffs[forged.id]?.rejection == "signature-invalid",
                        "Python on the forged \(forged.id): \(String(describing: outcome.handoffs[forged.id]))")
                }
            }
            let lost = Set(expected.keys).subtracting(mergers.keys)
            #expect(lost.isEmpty, "\(lost.count) genuine handoffs merged by nobody")
            let duplicates = mergers.filter { $0.value.count != 1 }
            #expect(duplicates.isEmpty, "merged more than once: \(duplicates)")
            #expect(Set(mergers.keys).isSubset(of: Set(expected.keys)), "a forged handoff was merged")
            let letters = try await successors[0].transport.deadLetters(label, timeout: .seconds(10))
            #expect(Set(letters.map(\.id)) == Set(attack.forged.map(\.id)))
            #expect(letters.allSatisfy { $0.reason == .signatureInvalid })
            // Python's verdicts, the merges and the broker's order (signed claims only) agree.
            for outcome in outcomes {
                for (id, entry) in outcome.handoffs where expected[id] != nil {
                    #expect(observer.winner(label, id) == entry.winner, "Python and the broker's order disagree on \(id)")
                }
            }
            for (id, list) in mergers {
                #expect(observer.winner(label, id) == list.first, "\(id) was merged by another participant than the verdict names")
            }
            await observer.stop()
            let pythonWins = mergers.values.filter { outcomes.map(\.instance).contains($0.first ?? "") }.count
            print(
                "keyed race of \(expected.count) handoffs under attack: Python merged \(pythonWins), Swift \(expected.count - pythonWins)")
            for successor in successors { await successor.transport.shutdown() }
            await predecessor.shutdown()
        }
    }
}
