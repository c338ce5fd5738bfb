import Dispatch
import Foundation
import Handoff
import HandoffTestSupport
import MosquittoTestKit
import Synchronization
import Testing

struct Validation: Error, CustomStringConvertible {
    var description: String { "total must not be negative" }
}

/// Wraps a transport, failing claims after `claimsBeforeFailure` successes, and making `pending` hang
/// (ignoring cancellation) when asked to.
final class FaultyTransport: HandoffTransport {
    let base: any HandoffTransport
    let claimsBeforeFailure: Int
    let pendingHangs: Bool
    private let claims = Mutex(0)

    init(_ base: any HandoffTransport, claimsBeforeFailure: Int = .max, pendingHangs: Bool = false) {
        self.base = base
        self.claimsBeforeFailure = claimsBeforeFailure
        self.pendingHangs = pendingHangs
    }

    var origin: HandoffOrigin { base.origin }
    func watch(_ label: HandoffLabel) async throws -> AsyncStream<HandoffNotice> { try await base.watch(label) }
    func unwatch(_ label: HandoffLabel) async throws { try await base.unwatch(label) }
    func pending(_ label: HandoffLabel) async throws -> [HandoffEnvelope] {
        if pendingHangs {
            await withCheckedContinuation { continuation in
                DispatchQueue.global().asyncAfter(deadline: .now() + 2) { continuation.resume() }
            }
        }
        return try await base.pending(label)
    }
    func claim(_ envelope: HandoffEnvelope, timeout: Duration) async throws -> Bool {
        let count = claims.withLock { count in
            count += 1
            return count
        }
        if count > claimsBeforeFailure {
            throw HandoffError.claimOutcomeUnknown(label: envelope.label, id: envelope.id, detail: "test fault")
        }
        return try await base.claim(envelope, timeout: timeout)
    }
    func release(_ envelope: HandoffEnvelope, timeout: Duration) async throws {
        try await base.release(envelope, timeout: timeout)
    }
    func initiate(_ envelope: HandoffEnvelope, timeout: Duration) async throws {
        try await base.initiate(envelope, timeout: timeout)
    }
    func deadLetter(_ envelope: HandoffEnvelope, reason: HandoffRejection.Reason, detail: String, timeout: Duration) async throws {
        try await base.deadLetter(envelope, reason: reason, detail: detail, timeout: timeout)
    }
    func deadLetters(_ label: HandoffLabel, timeout: Duration) async throws -> [DeadLetter] {
        try await base.deadLetters(label, timeout: timeout)
    }
}

/// A chunking transport whose chunks can never be read: like `MQTTHandoffTransport` when its connection fails while it reads
/// them, `assemble` gives the won manifest back and throws a transport error.
final class UnreadableChunksTransport: HandoffChunking {
    let base: any HandoffTransport

    init(_ base: any HandoffTransport) { self.base = base }

    var origin: HandoffOrigin { base.origin }
    func watch(_ label: HandoffLabel) async throws -> AsyncStream<HandoffNotice> { try await base.watch(label) }
    func unwatch(_ label: HandoffLabel) async throws { try await base.unwatch(label) }
    func pending(_ label: HandoffLabel) async throws -> [HandoffEnvelope] { try await base.pending(label) }
    func claim(_ envelope: HandoffEnvelope, timeout: Duration) async throws -> Bool { try await base.claim(envelope, timeout: timeout) }
    func release(_ envelope: HandoffEnvelope, timeout: Duration) async throws { try await base.release(envelope, timeout: timeout) }
    func initiate(_ envelope: HandoffEnvelope, timeout: Duration) async throws { try await base.initiate(envelope, timeout: timeout) }
    func deadLetter(_ envelope: HandoffEnvelope, reason: HandoffRejection.Reason, detail: String, timeout: Duration) async throws {
        try await base.deadLetter(envelope, reason: reason, detail: detail, timeout: timeout)
    }
    func deadLetters(_ label: HandoffLabel, timeout: Duration) async throws -> [DeadLetter] {
        try await base.deadLetters(label, timeout: timeout)
    }
    func willChunk(_ envelope: HandoffEnvelope) -> Bool { false }
    func checkManifest(_ manifest: HandoffEnvelope) throws(HandoffError) {}
    func assemble(_ manifest: HandoffEnvelope, timeout: Duration) async throws -> HandoffEnvelope {
        try await base.release(manifest, timeout: timeout)
        throw HandoffError.transportUnavailable("test: the chunks could not be read; given back")
    }
    func discardChunks(of envelope: HandoffEnvelope, timeout: Duration) async throws {}
}

@Suite("Typed channel")
struct ChannelTests {
    let hub = LocalHandoffHub()

    func participant(_ instance: String = UUID().uuidString) -> LocalHandoffTransport {
        LocalHandoffTransport(hub: hub, origin: .current(instance: instance))
    }

    func counterChannel(
        _ label: HandoffLabel,
        _ transport: any HandoffTransport,
        validate: (@Sendable (Counter) throws -> Void)? = nil
    ) -> HandoffChannel<Counter> {
        HandoffChannel(label: label, transport: transport, version: 3, migrations: counterMigrations(), validate: validate)
    }

    @Test("a handoff made before the successor started is taken over once")
    func handoffThenTakeOver() async throws {
        let label = uniqueLabel("channel")
        let dying = HandoffChannel<GCounter>(label: label, transport: participant())
        var state = GCounter()
        state.increment(by: 41, replica: "old")
        let envelope = try await dying.initiate(state)
        #expect(envelope.vsn == 1 && envelope.contentType == "application/json")

        let successor = HandoffChannel<GCounter>(label: label, transport: participant())
        let notices = NoticeRecorder(try await successor.subscribe())
        #expect(await notices.wait { notices, _ in notices.contains(.available(label)) })
        let batch = try await successor.complete()
        #expect(batch.handoffs.map(\.state) == [state])
        #expect(batch.handoffs.first?.id == envelope.id)
        #expect(batch.rejected.isEmpty && batch.deferred.isEmpty && batch.interruption == nil)
        var mine = GCounter()
        mine.increment(replica: "new")
        #expect(try batch.merged(into: mine, using: .mergeable()).value == 42)
        #expect(try await successor.complete().handoffs.isEmpty)
        try await successor.unsubscribe()
        #expect(await notices.wait { _, finished in finished })
        await #expect(throws: HandoffError.notSubscribed(label)) { try await successor.complete() }
    }

    @Test("several handoffs come back as one ordered batch, and never to their maker")
    func severalInOrder() async throws {
        let label = uniqueLabel("batch")
        let me = HandoffChannel<Int>(label: label, transport: participant())
        for value in 1...3 {
            try await HandoffChannel<Int>(label: label, transport: participant()).initiate(value)
            try await Task.sleep(for: .milliseconds(3))  // distinct createdAt, so the order is the values'
        }
        try await me.initiate(100)
        _ = try await me.subscribe()
        let batch = try await me.complete()
        #expect(batch.handoffs.map(\.state) == [1, 2, 3])
        #expect(zip(batch.handoffs, batch.handoffs.dropFirst()).allSatisfy { ClaimedHandoff.precedes($0, $1) })
        #expect(try batch.merged(into: 0, using: FoldStrategy { $0 + $1.state }) == 6)
        #expect(hub.waiting(label).map(\.origin.instance) == [me.transport.origin.instance])
    }

    @Test("an old version is migrated on the way in")
    func migratesOldVersions() async throws {
        let label = uniqueLabel("migrate")
        try await HandoffChannel<CounterV1>(label: label, transport: participant(), version: 1).initiate(CounterV1(count: 7))
        try await Task.sleep(for: .milliseconds(3))
        try await HandoffChannel<CounterV2>(label: label, transport: participant(), version: 2)
            .initiate(CounterV2(count: 8, owner: "v2"))
        let reader = counterChannel(label, participant())
        _ = try await reader.subscribe()
        let batch = try await reader.complete()
        #expect(
            batch.handoffs.map(\.state) == [
                Counter(total: 7, owner: "unknown", migrated: true), Counter(total: 8, owner: "v2", migrated: true),
            ])
        #expect(batch.handoffs.map(\.vsn) == [1, 2])
    }

    @Test("a newer version is left in place, reported once, and taken by a reader that knows it")
    func unknownVersionDeferred() async throws {
        let label = uniqueLabel("newer")
        let envelope = try await HandoffChannel<Counter>(label: label, transport: participant(), version: 4)
            .initiate(Counter(total: 1, owner: "future", migrated: false))
        let reader = counterChannel(label, participant())
        _ = try await reader.subscribe()
        let first = try await reader.complete()
        #expect(first.handoffs.isEmpty && first.rejected.isEmpty)
        let deferred = try #require(first.deferred.first)
        #expect(first.deferred.count == 1)
        #expect(deferred.reason == .unknownVersion && deferred.disposition == .leftInPlace)
        #expect(deferred.id == envelope.id.rawValue)
        #expect(deferred.description.contains("left in place"))
        #expect(hub.waiting(label) == [envelope])
        #expect(hub.deadLetters(label).isEmpty)

        let second = try await reader.complete()
        #expect(second.deferred.isEmpty && second.handoffs.isEmpty)
        #expect(hub.waiting(label) == [envelope])

        let newer = HandoffChannel<Counter>(label: label, transport: participant(), version: 4)
        _ = try await newer.subscribe()
        #expect(try await newer.complete().handoffs.map(\.id) == [envelope.id])
    }

    @Test("a state failing validation is dead-lettered with the reason, never merged")
    func validationFailure() async throws {
        let label = uniqueLabel("invalid")
        let writer = counterChannel(label, participant())
        let bad = try await writer.initiate(Counter(total: -5, owner: "x", migrated: false))
        let good = try await writer.initiate(Counter(total: 5, owner: "y", migrated: false))
        let reader = counterChannel(label, participant("reader")) { state in
            if state.total < 0 { throw Validation() }
        }
        _ = try await reader.subscribe()
        let batch = try await reader.complete()
        #expect(batch.handoffs.map(\.id) == [good.id])
        let rejection = try #require(batch.rejected.first)
        #expect(batch.rejected.count == 1)
        #expect(rejection.reason == .validationFailed && rejection.disposition == .deadLettered)
        #expect(rejection.id == bad.id.rawValue)
        #expect(
            rejection.description
                == "handoff '\(label)'/\(bad.id) rejected (validation-failed): total must not be negative; moved to dead letters")
        let letters = try await reader.transport.deadLetters(label, timeout: .seconds(1))
        #expect(letters.map(\.reason) == [.validationFailed])
        #expect(letters.first?.detail == "total must not be negative")
        #expect(letters.first?.rejectedBy == "reader")
        #expect(try HandoffEnvelope.decode(try #require(letters.first).payload) == bad)
        #expect(hub.waiting(label).isEmpty)
    }

    @Test("an undecodable state, a failed migration and another content type are dead-lettered")
    func undecodable() async throws {
        let label = uniqueLabel("undecodable")
        let origin = HandoffOrigin(instance: "writer")
        let writer = participant("writer")
        let garbage = HandoffEnvelope(label: label, vsn: 3, origin: origin, data: Data("{\"nope\":1}".utf8))
        let failing = HandoffEnvelope(label: label, vsn: 1, origin: origin, data: Data(#"{"count":-1}"#.utf8))
        let foreign = HandoffEnvelope(
            label: label, vsn: 3, origin: origin, contentType: "application/cbor", data: Data([0xA0])
        )
        for envelope in [garbage, failing, foreign] { try await writer.initiate(envelope, timeout: .seconds(1)) }
        let reader = counterChannel(label, participant())
        _ = try await reader.subscribe()
        let batch = try await reader.complete()
        #expect(batch.handoffs.isEmpty)
        let reasons = Dictionary(uniqueKeysWithValues: batch.rejected.map { ($0.id, $0.reason) })
        #expect(
            reasons == [
                garbage.id.rawValue: .undecodableState, failing.id.rawValue: .migrationFailed,
                foreign.id.rawValue: .undecodableState,
            ])
        #expect(Set(hub.deadLetters(label).map(\.id)) == Set(reasons.keys))
        #expect(hub.waiting(label).isEmpty)
    }

    @Test("a media type with parameters still matches")
    func mediaTypeParameters() async throws {
        let label = uniqueLabel("charset")
        let writer = participant()
        let envelope = HandoffEnvelope(
            label: label, vsn: 1, origin: writer.origin, contentType: "Application/JSON; charset=utf-8", data: Data("5".utf8)
        )
        try await writer.initiate(envelope, timeout: .seconds(1))
        let reader = HandoffChannel<Int>(label: label, transport: participant())
        _ = try await reader.subscribe()
        #expect(try await reader.complete().handoffs.map(\.state) == [5])
    }

    @Test("initiating unsubscribes, so a process on its way out takes over nothing more")
    func initiateUnsubscribes() async throws {
        let label = uniqueLabel("leaving")
        let leaving = HandoffChannel<Int>(label: label, transport: participant())
        let notices = NoticeRecorder(try await leaving.subscribe())
        try await leaving.initiate(1)
        #expect(await notices.wait { _, finished in finished })
        try await HandoffChannel<Int>(label: label, transport: participant()).initiate(2)
        await #expect(throws: HandoffError.notSubscribed(label)) { try await leaving.complete() }
        #expect(hub.waiting(label).count == 2)
    }

    @Test("a state that cannot be encoded is not published")
    func encodingFailure() async throws {
        let label = uniqueLabel("nan")
        let writer = HandoffChannel<Double>(label: label, transport: participant())
        await #expect {
            try await writer.initiate(.nan)
        } throws: { error in
            guard let error = error as? HandoffError, error.code == .encodingFailed else { return false }
            return error.label == label
        }
        #expect(hub.waiting(label).isEmpty)
    }

    @Test("two successors racing for the same handoffs get each exactly once")
    func racingSuccessors() async throws {
        let label = uniqueLabel("racing")
        let successors = (0..<3).map { _ in HandoffChannel<Int>(label: label, transport: participant()) }
        for successor in successors { _ = try await successor.subscribe() }
        for value in 0..<50 { try await HandoffChannel<Int>(label: label, transport: participant()).initiate(value) }
        let taken = try await withThrowingTaskGroup(of: [Int].self) { group in
            for successor in successors { group.addTask { try await successor.complete().handoffs.map(\.state) } }
            return try await group.reduce(into: [Int]()) { $0 += $1 }
        }
        #expect(taken.sorted() == Array(0..<50))
    }

    @Test("handoffs() yields live handoffs, and stopping it unsubscribes")
    func handoffStream() async throws {
        let label = uniqueLabel("stream")
        let transport = participant()
        let successor = HandoffChannel<String>(label: label, transport: transport)
        try await HandoffChannel<String>(label: label, transport: participant()).initiate("before")
        let consumer = Task {
            var seen: [String] = []
            for try await handoff in successor.handoffs() {
                seen.append(handoff.state)
                if seen.count == 2 { break }
            }
            return seen
        }
        #expect(await eventually { self.hub.waiting(label).isEmpty })
        try await HandoffChannel<String>(label: label, transport: participant()).initiate("after")
        #expect(try await consumer.value == ["before", "after"])
        #expect(await eventually { (try? await transport.pending(label)) == nil })
    }

    @Test("a transport failure part-way keeps what was claimed and leaves the rest waiting")
    func interruption() async throws {
        let label = uniqueLabel("interrupted")
        for value in 1...3 {
            try await HandoffChannel<Int>(label: label, transport: participant()).initiate(value)
            try await Task.sleep(for: .milliseconds(3))
        }
        let faulty = FaultyTransport(participant(), claimsBeforeFailure: 1)
        let reader = HandoffChannel<Int>(label: label, transport: faulty)
        _ = try await reader.subscribe()
        let batch = try await reader.complete()
        #expect(batch.handoffs.map(\.state) == [1])
        guard (batch.interruption as? HandoffError)?.code == .claimOutcomeUnknown else {
            Issue.record("expected claimOutcomeUnknown, got \(String(describing: batch.interruption))")
            return
        }
        #expect(hub.waiting(label).count == 2)
    }

    @Test("a won chunked handoff whose chunks cannot be read is given back, not dead-lettered, and the error interrupts the batch")
    func unreadableChunksGivenBack() async throws {
        let label = uniqueLabel("chunks-unreadable")
        let manifest = HandoffEnvelope(
            label: label, vsn: 1, origin: .current(instance: "predecessor"), contentType: HandoffEnvelope.chunkManifestContentType,
            data: Data(#"{"format":"swift-handoff-chunks/1"}"#.utf8))
        try await participant().initiate(manifest, timeout: .seconds(5))
        let reader = HandoffChannel<Int>(label: label, transport: UnreadableChunksTransport(participant()))
        _ = try await reader.subscribe()
        let batch = try await reader.complete()
        #expect(batch.handoffs.isEmpty && batch.rejected.isEmpty)
        #expect((batch.interruption as? HandoffError)?.code == .transportUnavailable, "\(String(describing: batch.interruption))")
        #expect(hub.deadLetters(label).isEmpty, "a handoff given back is not also a dead letter")
        #expect(hub.waiting(label).map(\.id) == [manifest.id], "it waits again for a successor")
    }

    @Test("operations that hang time out within the channel's timeout")
    func timeout() async throws {
        let label = uniqueLabel("hang")
        let reader = HandoffChannel<Int>(
            label: label, transport: FaultyTransport(participant(), pendingHangs: true), timeout: .milliseconds(200)
        )
        _ = try await reader.subscribe()
        let clock = ContinuousClock()
        let start = clock.now
        await #expect(throws: HandoffError.timeout(operation: "pending", after: .milliseconds(200))) {
            try await reader.complete()
        }
        #expect(clock.now - start < .seconds(5), "the hang was not cut at its time limit: \(clock.now - start)")
    }
}
