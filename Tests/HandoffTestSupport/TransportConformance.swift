import Foundation
import Handoff
import MosquittoTestKit
import Testing

/// Makes the participants of one transport backend for the conformance scenarios.
///
/// The scenarios in ``TransportScenario`` hold for every ``HandoffTransport``: run them against a backend by
/// giving them a factory, e.g. `@Test(arguments: TransportScenario.allCases) func mqtt(_ s: TransportScenario)
/// async throws { try await s.run(using: MQTTFactory()) }`. Each scenario uses fresh labels.
package protocol HandoffTransportFactory: Sendable {
    /// A new participant whose `origin.instance` is `instance`, sharing the backend's store with the others.
    func makeTransport(instance: String) async throws -> any HandoffTransport
    /// Releases a participant made by ``makeTransport(instance:)``.
    func release(_ transport: any HandoffTransport) async
}

extension HandoffTransportFactory {
    package func release(_ transport: any HandoffTransport) async {}
}

/// The behaviours every transport must show.
package enum TransportScenario: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case handoffBeforeSubscriberIsClaimedByLaterOne
    case subscribedSuccessorIsNotifiedLive
    case severalHandoffsComeBackInOrder
    case unwatchStopsNotices
    case watchingAgainReplacesTheStream
    case pendingNeedsAWatch
    case processNeverGetsItsOwnHandoff
    case racingClaimsHaveExactlyOneWinner
    case deadLetterTakesTheHandoffOutAndKeepsIt
    case initiateStampsNothingAndKeepsEnvelopeIntact
    case watchOutlivesADroppedStream

    package var testDescription: String { rawValue }

    /// The time any single expectation may take to come true on a real broker.
    static let patience: Duration = .seconds(5)
    static let timeout: Duration = .seconds(5)

    package func run(using factory: some HandoffTransportFactory) async throws {
        switch self {
        case .handoffBeforeSubscriberIsClaimedByLaterOne: try await Self.handoffBeforeSubscriber(factory)
        case .subscribedSuccessorIsNotifiedLive: try await Self.notifiedLive(factory)
        case .severalHandoffsComeBackInOrder: try await Self.severalInOrder(factory)
        case .unwatchStopsNotices: try await Self.unwatchStops(factory)
        case .watchingAgainReplacesTheStream: try await Self.rewatch(factory)
        case .pendingNeedsAWatch: try await Self.pendingNeedsWatch(factory)
        case .processNeverGetsItsOwnHandoff: try await Self.neverOwn(factory)
        case .racingClaimsHaveExactlyOneWinner: try await Self.racingClaims(factory)
        case .deadLetterTakesTheHandoffOutAndKeepsIt: try await Self.deadLetter(factory)
        case .initiateStampsNothingAndKeepsEnvelopeIntact: try await Self.intact(factory)
        case .watchOutlivesADroppedStream: try await Self.droppedStream(factory)
        }
    }

    /// Waits until `transport.pending(label)` has `count` entries and returns them.
    static func pending(
        _ transport: any HandoffTransport,
        _ label: HandoffLabel,
        count: Int
    ) async throws -> [HandoffEnvelope] {
        var last: [HandoffEnvelope] = []
        _ = try await eventually(upTo: patience) {
            last = try await transport.pending(label)
            return last.count == count
        }
        return last
    }

    static func handoffBeforeSubscriber(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("before")
        let dying = try await factory.makeTransport(instance: "dying-\(UUID())")
        let envelope = makeEnvelope(label, from: dying.origin, data: #"{"count":41}"#)
        try await dying.initiate(envelope, timeout: timeout)
        await factory.release(dying)

        let successor = try await factory.makeTransport(instance: "successor-\(UUID())")
        let notices = NoticeRecorder(try await successor.watch(label))
        #expect(await notices.wait { notices, _ in notices.contains(.available(label)) })
        let pending = try await Self.pending(successor, label, count: 1)
        #expect(pending == [envelope])
        #expect(try await successor.claim(envelope, timeout: timeout))
        #expect(try await Self.pending(successor, label, count: 0).isEmpty)

        // A later participant finds nothing: it was claimed.
        let late = try await factory.makeTransport(instance: "late-\(UUID())")
        let lateNotices = NoticeRecorder(try await late.watch(label))
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await late.pending(label).isEmpty)
        #expect(lateNotices.availableCount == 0)
        #expect(try await late.claim(envelope, timeout: timeout) == false)
        try await successor.unwatch(label)
        try await late.unwatch(label)
        await factory.release(successor)
        await factory.release(late)
    }

    static func notifiedLive(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("live")
        let successor = try await factory.makeTransport(instance: "successor-\(UUID())")
        let notices = NoticeRecorder(try await successor.watch(label))
        try await Task.sleep(for: .milliseconds(50))
        #expect(notices.availableCount == 0)
        #expect(try await successor.pending(label).isEmpty)

        let dying = try await factory.makeTransport(instance: "dying-\(UUID())")
        let envelope = makeEnvelope(label, from: dying.origin)
        try await dying.initiate(envelope, timeout: timeout)
        #expect(await notices.wait { notices, _ in notices.contains(.available(label)) })
        #expect(try await Self.pending(successor, label, count: 1) == [envelope])
        #expect(try await successor.claim(envelope, timeout: timeout))
        try await successor.unwatch(label)
        await factory.release(dying)
        await factory.release(successor)
    }

    static func severalInOrder(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("several")
        let base = Date(timeIntervalSince1970: 1_795_586_400)
        var envelopes: [HandoffEnvelope] = []
        // Three instances, one of them handing off twice; two with the same createdAt (ordered by id).
        for (index, (instance, offset, id)) in [
            ("c", 2.0, "ccc"), ("a", 0.5, "zzz"), ("b", 0.5, "aaa"), ("a", 0.0, "mmm"),
        ].enumerated() {
            let transport = try await factory.makeTransport(instance: "\(instance)-\(label.rawValue)")
            let envelope = makeEnvelope(
                label, from: transport.origin, data: "\(index)", createdAt: base.addingTimeInterval(offset),
                id: try HandoffID("\(id)-\(UUID())")
            )
            try await transport.initiate(envelope, timeout: timeout)
            envelopes.append(envelope)
            await factory.release(transport)
        }
        let successor = try await factory.makeTransport(instance: "successor-\(UUID())")
        _ = NoticeRecorder(try await successor.watch(label))
        let pending = try await Self.pending(successor, label, count: 4)
        #expect(pending.map(\.data) == ["3", "2", "1", "0"].map { Data($0.utf8) })
        #expect(pending == envelopes.sorted(by: HandoffEnvelope.precedes))
        for envelope in pending { #expect(try await successor.claim(envelope, timeout: timeout)) }
        #expect(try await Self.pending(successor, label, count: 0).isEmpty)
        try await successor.unwatch(label)
        await factory.release(successor)
    }

    static func unwatchStops(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("unwatch")
        let successor = try await factory.makeTransport(instance: "successor-\(UUID())")
        let notices = NoticeRecorder(try await successor.watch(label))
        try await successor.unwatch(label)
        #expect(await notices.wait { _, finished in finished })
        await #expect(throws: HandoffError.notSubscribed(label)) { try await successor.pending(label) }

        let dying = try await factory.makeTransport(instance: "dying-\(UUID())")
        let envelope = makeEnvelope(label, from: dying.origin)
        try await dying.initiate(envelope, timeout: timeout)
        try await Task.sleep(for: .milliseconds(100))
        #expect(notices.notices.isEmpty)

        // The handoff stayed where it was: watching again reports it.
        let again = NoticeRecorder(try await successor.watch(label))
        #expect(await again.wait { notices, _ in notices.contains(.available(label)) })
        #expect(try await Self.pending(successor, label, count: 1) == [envelope])
        #expect(try await successor.claim(envelope, timeout: timeout))
        try await successor.unwatch(label)
        await factory.release(dying)
        await factory.release(successor)
    }

    static func rewatch(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("rewatch")
        let successor = try await factory.makeTransport(instance: "successor-\(UUID())")
        let first = NoticeRecorder(try await successor.watch(label))
        let second = NoticeRecorder(try await successor.watch(label))
        #expect(await first.wait { _, finished in finished })
        let dying = try await factory.makeTransport(instance: "dying-\(UUID())")
        let envelope = makeEnvelope(label, from: dying.origin)
        try await dying.initiate(envelope, timeout: timeout)
        #expect(await second.wait { notices, _ in notices.contains(.available(label)) })
        #expect(!second.isFinished)
        #expect(try await successor.claim(envelope, timeout: timeout))
        try await successor.unwatch(label)
        #expect(await second.wait { _, finished in finished })
        await factory.release(dying)
        await factory.release(successor)
    }

    static func pendingNeedsWatch(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("unwatched")
        let transport = try await factory.makeTransport(instance: "p-\(UUID())")
        await #expect(throws: HandoffError.notSubscribed(label)) { try await transport.pending(label) }
        try await transport.unwatch(label)  // unwatching an unwatched label is harmless
        await factory.release(transport)
    }

    static func neverOwn(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("own")
        let instance = "self-\(UUID())"
        let me = try await factory.makeTransport(instance: instance)
        let mine = NoticeRecorder(try await me.watch(label))
        let envelope = makeEnvelope(label, from: me.origin)
        try await me.initiate(envelope, timeout: timeout)

        let other = try await factory.makeTransport(instance: "other-\(UUID())")
        let theirs = NoticeRecorder(try await other.watch(label))
        #expect(await theirs.wait { notices, _ in notices.contains(.available(label)) })
        #expect(try await Self.pending(other, label, count: 1) == [envelope])
        #expect(mine.availableCount == 0)
        #expect(try await me.pending(label).isEmpty)

        // Not even a restarted process with the same instance name gets it.
        try await me.unwatch(label)
        await factory.release(me)
        let reborn = try await factory.makeTransport(instance: instance)
        let rebornNotices = NoticeRecorder(try await reborn.watch(label))
        try await Task.sleep(for: .milliseconds(100))
        #expect(rebornNotices.availableCount == 0)
        #expect(try await reborn.pending(label).isEmpty)

        #expect(try await other.claim(envelope, timeout: timeout))
        try await other.unwatch(label)
        try await reborn.unwatch(label)
        await factory.release(other)
        await factory.release(reborn)
    }

    static func racingClaims(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("race")
        let dying = try await factory.makeTransport(instance: "dying-\(UUID())")
        let racers = [
            try await factory.makeTransport(instance: "racer-a-\(UUID())"),
            try await factory.makeTransport(instance: "racer-b-\(UUID())"),
            try await factory.makeTransport(instance: "racer-c-\(UUID())"),
        ]
        var recorders: [NoticeRecorder] = []
        for racer in racers { recorders.append(NoticeRecorder(try await racer.watch(label))) }
        for round in 0..<20 {
            let envelope = makeEnvelope(label, from: dying.origin, data: "\(round)")
            try await dying.initiate(envelope, timeout: timeout)
            for racer in racers { _ = try await Self.pending(racer, label, count: 1) }
            let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
                for racer in racers {
                    group.addTask { try await racer.claim(envelope, timeout: timeout) }
                }
                return try await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
            }
            #expect(wins == 1, "round \(round): \(wins) winners")
            for racer in racers { #expect(try await Self.pending(racer, label, count: 0).isEmpty) }
        }
        for racer in racers {
            try await racer.unwatch(label)
            await factory.release(racer)
        }
        await factory.release(dying)
    }

    static func deadLetter(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("dead")
        let dying = try await factory.makeTransport(instance: "dying-\(UUID())")
        let envelope = makeEnvelope(label, from: dying.origin, data: #"{"bad":true}"#)
        try await dying.initiate(envelope, timeout: timeout)
        let successor = try await factory.makeTransport(instance: "successor-\(UUID())")
        _ = NoticeRecorder(try await successor.watch(label))
        _ = try await Self.pending(successor, label, count: 1)
        try await successor.deadLetter(envelope, reason: .validationFailed, detail: "count < 0", timeout: timeout)
        #expect(try await Self.pending(successor, label, count: 0).isEmpty)
        #expect(try await successor.claim(envelope, timeout: timeout) == false)

        var letters: [DeadLetter] = []
        _ = try await eventually(upTo: patience) {
            letters = try await successor.deadLetters(label, timeout: timeout)
            return !letters.isEmpty
        }
        let letter = try #require(letters.first)
        #expect(letters.count == 1)
        #expect(letter.label == label)
        #expect(letter.id == envelope.id.rawValue)
        #expect(letter.reason == .validationFailed)
        #expect(letter.detail == "count < 0")
        #expect(letter.rejectedBy == successor.origin.instance)
        #expect(abs(letter.rejectedAt.timeIntervalSinceNow) < 60)
        #expect(try HandoffEnvelope.decode(letter.payload) == envelope)
        try await successor.unwatch(label)
        await factory.release(dying)
        await factory.release(successor)
    }

    static func intact(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("intact")
        let dying = try await factory.makeTransport(instance: "dying-\(UUID())")
        let data = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7) })
        let envelope = HandoffEnvelope(
            label: label, vsn: 7, origin: HandoffOrigin(instance: dying.origin.instance, host: "h", pid: 99),
            contentType: "application/octet-stream", data: data
        )
        try await dying.initiate(envelope, timeout: timeout)
        let successor = try await factory.makeTransport(instance: "successor-\(UUID())")
        _ = NoticeRecorder(try await successor.watch(label))
        let received = try #require(try await Self.pending(successor, label, count: 1).first)
        #expect(received == envelope)
        #expect(received.sha256 == envelope.sha256)
        #expect(try await successor.claim(received, timeout: timeout))
        try await successor.unwatch(label)
        await factory.release(dying)
        await factory.release(successor)
    }

    static func droppedStream(_ factory: some HandoffTransportFactory) async throws {
        let label = uniqueLabel("dropped")
        let successor = try await factory.makeTransport(instance: "successor-\(UUID())")
        _ = try await successor.watch(label)
        let dying = try await factory.makeTransport(instance: "dying-\(UUID())")
        let envelope = makeEnvelope(label, from: dying.origin)
        try await dying.initiate(envelope, timeout: timeout)
        #expect(try await Self.pending(successor, label, count: 1) == [envelope])
        #expect(try await successor.claim(envelope, timeout: timeout))
        try await successor.unwatch(label)
        await #expect(throws: HandoffError.notSubscribed(label)) { try await successor.pending(label) }
        await factory.release(dying)
        await factory.release(successor)
    }
}
