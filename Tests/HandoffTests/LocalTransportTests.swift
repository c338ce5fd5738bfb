import Foundation
import Handoff
import HandoffTestSupport
import Testing

/// Participants of one shared ``LocalHandoffHub``.
struct LocalTransportFactory: HandoffTransportFactory {
    let hub = LocalHandoffHub()

    func makeTransport(instance: String) async throws -> any HandoffTransport {
        LocalHandoffTransport(hub: hub, origin: .current(instance: instance))
    }
}

@Suite("Local transport")
struct LocalTransportTests {
    @Test("conformance", arguments: TransportScenario.allCases)
    func conformance(_ scenario: TransportScenario) async throws {
        try await scenario.run(using: LocalTransportFactory())
    }

    @Test("a raw payload that is not an envelope is dead-lettered and reported to watchers")
    func rawGarbage() async throws {
        let hub = LocalHandoffHub()
        let label = uniqueLabel("garbage")
        let watcher = LocalHandoffTransport(hub: hub, origin: .current())
        let notices = NoticeRecorder(try await watcher.watch(label))
        hub.deliverRawPayload(Data("garbage".utf8), to: label)
        #expect(await notices.wait { notices, _ in !notices.isEmpty })
        guard case .rejected(let rejection) = notices.notices.first else {
            Issue.record("expected a rejection, got \(notices.notices)")
            return
        }
        #expect(rejection.reason == .malformed)
        #expect(rejection.disposition == .deadLettered)
        #expect(rejection.label == label)
        #expect(rejection.description.contains("rejected (malformed)"))
        #expect(rejection.description.hasSuffix("moved to dead letters"))
        let letters = try await watcher.deadLetters(label, timeout: .seconds(1))
        #expect(letters.map(\.payload) == [Data("garbage".utf8)])
        #expect(letters.first?.rejectedBy == "local-hub")
        #expect(try await watcher.pending(label).isEmpty)
    }

    @Test("an envelope found under another label is a label mismatch")
    func labelMismatch() async throws {
        let hub = LocalHandoffHub()
        let label = uniqueLabel("here")
        let other = uniqueLabel("there")
        let envelope = makeEnvelope(other, from: HandoffOrigin(instance: "x"))
        hub.deliverRawPayload(envelope.encoded(), to: label)
        let letters = hub.deadLetters(label)
        #expect(letters.map(\.reason) == [.labelMismatch])
        #expect(letters.first?.id == envelope.id.rawValue)
        #expect(hub.waiting(label).isEmpty && hub.waiting(other).isEmpty)

        hub.deliverRawPayload(envelope.encoded(), to: other)
        #expect(hub.waiting(other) == [envelope])
    }

    @Test("a released participant's streams finish")
    func releasedParticipant() async throws {
        let hub = LocalHandoffHub()
        let label = uniqueLabel("released")
        var transport: LocalHandoffTransport? = LocalHandoffTransport(hub: hub, origin: .current())
        let notices = NoticeRecorder(try await transport!.watch(label))
        transport = nil
        #expect(await notices.wait { _, finished in finished })
    }
}
