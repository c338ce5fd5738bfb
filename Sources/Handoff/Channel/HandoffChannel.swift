import Foundation
import Logging
import Synchronization

/// One label and one state type: the typed way to hand state off and take it over.
///
/// The steps of the original, in Swift:
///
/// ```swift
/// let channel = HandoffChannel<Counter>(label: try HandoffLabel("counter"), transport: transport)
///
/// // Starting up: subscribe, and take over whatever is (or becomes) available.
/// for await notice in try await channel.subscribe() {
///     guard case .available = notice else { continue }
///     let batch = try await channel.complete()
///     state = try batch.merged(into: state, using: .mergeable())
/// }
///
/// // Shutting down (within the grace period): hand the state to the successor.
/// try await channel.initiate(state)
/// ```
///
/// Or let ``handoffs()`` do the subscribing and claiming.
///
/// A channel never merges state it could not read: a handoff at a version it cannot read is left waiting
/// for a participant that can (``HandoffBatch/deferred``), and one that cannot be decoded, migrated or
/// validated is moved to the dead letters (``HandoffBatch/rejected``).
public final class HandoffChannel<State: Codable & Sendable>: Sendable {
    /// The label handoffs wait under.
    public let label: HandoffLabel
    /// Where they wait.
    public let transport: any HandoffTransport
    /// The version of `State` this channel writes.
    public let version: Int
    /// How this channel reads older versions.
    public let migrations: HandoffMigrations<State>
    /// How states are turned into bytes.
    public let codec: any HandoffStateCodec
    /// The time budget of each operation.
    public let timeout: Duration
    private let validate: (@Sendable (State) throws -> Void)?
    private let logger: Logger
    /// Ids of unreadable handoffs already reported as deferred.
    private let reportedDeferred = Mutex<Set<HandoffID>>([])
    /// Whether this channel subscribed and has not unsubscribed since.
    private let subscribed = Mutex(false)
    /// Counts subscribe() calls: a ``ClaimedHandoffs`` iterator unsubscribes only if nobody subscribed after it.
    private let generation = Mutex<UInt64>(0)

    /// Creates a channel.
    ///
    /// - Parameters:
    ///   - label: The label handoffs wait under.
    ///   - transport: Where they wait.
    ///   - version: The version of `State` written by ``initiate(_:)``.
    ///   - migrations: How to read older versions; `currentVersion` must be `version`. `nil`: only `version`
    ///     is readable.
    ///   - codec: How states are turned into bytes; JSON by default.
    ///   - validate: Checks a received state before it is accepted; throwing moves the handoff to the dead
    ///     letters with reason `validationFailed` (the original's "don't propagate bad state").
    ///   - timeout: The time budget of each operation (the original's 5 s).
    ///   - logger: Where the channel logs; rejections at warning, everything else at debug.
    public init(
        label: HandoffLabel,
        transport: any HandoffTransport,
        version: Int = 1,
        migrations: HandoffMigrations<State>? = nil,
        codec: any HandoffStateCodec = JSONStateCodec(),
        validate: (@Sendable (State) throws -> Void)? = nil,
        timeout: Duration = .seconds(5),
        logger: Logger = Logger(label: "handoff")
    ) {
        precondition(version >= 0, "a handoff version must not be negative")
        precondition(
            migrations == nil || migrations?.currentVersion == version,
            "the migrations lead to version \(migrations?.currentVersion ?? version), but the channel's version is \(version)"
        )
        self.label = label
        self.transport = transport
        self.version = version
        self.migrations = migrations ?? HandoffMigrations(currentVersion: version)
        self.codec = codec
        self.validate = validate
        self.timeout = timeout
        var logger = logger
        logger[metadataKey: "handoff.label"] = "\(label)"
        self.logger = logger
    }

    /// Starts watching the label (the original's `handoff_subscribe`). The stream reports
    /// ``HandoffNotice/available(_:)`` when handoffs are waiting, already or later: call ``complete()``.
    /// Subscribing again finishes the previous stream.
    public func subscribe() async throws -> AsyncStream<HandoffNotice> {
        let transport = transport
        let label = label
        generation.withLock { $0 += 1 }
        let stream = try await withDeadline(timeout, operation: "subscribe") { try await transport.watch(label) }
        subscribed.withLock { $0 = true }
        return stream
    }

    /// Subscribes, and returns the subscription's generation with its stream.
    func subscribeCounted() async throws -> (stream: AsyncStream<HandoffNotice>, generation: UInt64) {
        let stream = try await subscribe()
        return (stream, generation.withLock { $0 })
    }

    /// Unsubscribes unless the channel subscribed again after `generation` (another consumer watches now).
    func unsubscribe(ifStill generation: UInt64) async {
        guard self.generation.withLock({ $0 }) == generation else { return }
        try? await unsubscribe()
    }

    /// Stops watching the label and finishes the stream; waiting handoffs stay where they are.
    public func unsubscribe() async throws {
        let transport = transport
        let label = label
        try await withDeadline(timeout, operation: "unsubscribe") { try await transport.unwatch(label) }
        subscribed.withLock { $0 = false }
    }

    /// Hands `state` off (the original's `handoff_initiate`): encodes it at ``version``, stores it as a waiting
    /// handoff, and returns once the transport has acknowledged it.
    ///
    /// Like the original, a subscribed channel first unsubscribes: a process handing its state off is on its
    /// way out and must not take over other handoffs that it would then lose. (It never receives its own.)
    ///
    /// - Throws: ``HandoffError/encodingFailed(label:detail:underlying:)`` when the state cannot be encoded (nothing is
    ///   published), ``HandoffError/fenced(_:)`` when successors took the label's state over (nothing is published),
    ///   or the transport's error (such as a timeout).
    @discardableResult
    public func initiate(_ state: State) async throws -> HandoffEnvelope {
        if let fencing = (transport as? any HandoffCheckpointing)?.fencing(of: label) {
            throw HandoffError.fenced(fencing)
        }
        let envelope = try handoffEnvelope(for: state)
        if subscribed.withLock({ $0 }) {
            do {
                try await unsubscribe()
            } catch {
                logger.debug("unsubscribing before the handoff failed", metadata: ["handoff.error": "\(error)"])
            }
        }
        try await transport.initiate(envelope, timeout: timeout)
        logger.debug(
            "handoff initiated",
            metadata: ["handoff.id": "\(envelope.id)", "handoff.vsn": "\(version)", "handoff.bytes": "\(envelope.data.count)"]
        )
        return envelope
    }

    /// Stores `state` as this participant's checkpoint of the label (``HandoffCheckpointing``): if the process dies
    /// without handing off, successors merge its last checkpoint. With `onlyIfChanged` (the default) a state equal to
    /// the last checkpoint stored is not sent again.
    ///
    /// - Returns: ``HandoffCheckpointOutcome/fenced`` once successors took this label's state over: stop
    ///   checkpointing it, and do not hand it off.
    /// - Throws: ``HandoffError/transportUnavailable(_:underlying:)`` when the transport keeps no checkpoints or the store is
    ///   unreachable; ``HandoffError/encodingFailed(label:detail:underlying:)`` when the state cannot be encoded.
    @discardableResult
    public func checkpoint(_ state: State, onlyIfChanged: Bool = true) async throws -> HandoffCheckpointOutcome {
        guard let checkpoints = transport as? any HandoffCheckpointing else {
            throw HandoffError.transportUnavailable("\(type(of: transport)) keeps no checkpoints")
        }
        return try await checkpoints.checkpoint(try envelope(for: state), onlyIfChanged: onlyIfChanged, timeout: timeout)
    }

    /// The envelope that hands `state` off, as ``initiate(_:)`` and `HandoffService` send it: with its payload made once
    /// (the encoded state is not kept beside it, so a large state's bytes are held once); a state sent in chunks is not
    /// copied into a payload at all: its chunks are slices of the data (docs/PROTOCOL.md §12).
    package func handoffEnvelope(for state: State) throws(HandoffError) -> HandoffEnvelope {
        let made = try envelope(for: state)
        return (transport as? any HandoffChunking)?.willChunk(made) == true ? made : made.withWireForm()
    }

    /// The envelope of `state`. Not yet in wire form: a checkpointing transport stamps it first (which would drop a
    /// wire form made here); ``handoffEnvelope(for:)`` makes it once.
    package func envelope(for state: State) throws(HandoffError) -> HandoffEnvelope {
        HandoffEnvelope(label: label, vsn: version, origin: transport.origin, contentType: codec.contentType, data: try encoded(state))
    }

    /// `state` in this channel's codec; a failure is ``HandoffError/encodingFailed(label:detail:underlying:)``.
    private func encoded(_ state: State) throws(HandoffError) -> Data {
        do {
            return try codec.encode(state)
        } catch {
            throw HandoffError.encodingFailed(label: label, detail: String(describing: error), underlying: error)
        }
    }

    /// Takes over the waiting handoffs (the original's `handoff_complete`); needs ``subscribe()`` first.
    ///
    /// For each pending handoff, in ascending (createdAt, id) order:
    /// 1. written at a version this channel cannot read: not claimed, not touched; reported once in
    ///    ``HandoffBatch/deferred``;
    /// 2. another content type, or not decodable, migratable or valid: moved to the dead letters and reported
    ///    in ``HandoffBatch/rejected``, never merged;
    /// 3. otherwise claimed: if this participant wins, it is in ``HandoffBatch/handoffs``; if another one
    ///    won, it is skipped.
    ///
    /// The list is empty when another participant got there first.
    ///
    /// - Throws: ``HandoffError/notSubscribed(_:)`` when not subscribed, or the transport's error when the
    ///   pending handoffs cannot be listed. A failure after that, cancellation included, does not throw (claimed
    ///   handoffs must not be lost): it ends the batch early with ``HandoffBatch/interruption`` set, and the batch
    ///   holds every handoff won so far: the caller owns them. A claim cut short (cancelled, timed out) whose
    ///   verdict names this participant later is offered again by the next `complete()`, or given back to the
    ///   waiting handoffs by the transport when the label is unwatched.
    public func complete() async throws -> HandoffBatch<State> {
        let pending = try await pendingEnvelopes()
        var batch = HandoffBatch<State>()
        for envelope in pending {
            do {
                try await process(envelope, into: &batch)
            } catch {
                logger.info(
                    "handoff complete interrupted; the batch holds the handoffs won so far, the rest stay waiting",
                    metadata: ["handoff.id": "\(envelope.id)", "handoff.error": "\(error)"]
                )
                batch.interruption = error
                break
            }
        }
        return batch
    }

    private func process(_ envelope: HandoffEnvelope, into batch: inout HandoffBatch<State>) async throws {
        var metadata: Logger.Metadata = ["handoff.id": "\(envelope.id)", "handoff.vsn": "\(envelope.vsn)"]
        guard migrations.canRead(version: envelope.vsn) else {
            let firstReport = reportedDeferred.withLock { $0.insert(envelope.id).inserted }
            guard firstReport else { return }
            let detail = HandoffError.unknownVersionDetail(envelope.vsn, migrations: migrations)
            let rejection = HandoffRejection(
                label: label,
                id: envelope.id.rawValue,
                reason: .unknownVersion,
                detail: detail,
                disposition: .leftInPlace
            )
            metadata["handoff.reason"] = "\(HandoffRejection.Reason.unknownVersion.rawValue)"
            logger.warning("\(rejection)", metadata: metadata)
            batch.deferred.append(rejection)
            return
        }

        if envelope.isChunkManifest, let chunking = transport as? any HandoffChunking {
            try await processChunked(envelope, chunking, into: &batch, metadata: metadata)
            return
        }

        let state: State
        do {
            state = try read(envelope)
        } catch {
            try await reject(envelope, reason: error.reason, detail: error.detail, into: &batch, metadata: &metadata)
            return
        }

        if try await transport.claim(envelope, timeout: timeout) {
            var claimed = ClaimedHandoff(
                id: envelope.id,
                label: label,
                vsn: envelope.vsn,
                state: state,
                createdAt: envelope.createdAt,
                origin: envelope.origin,
                isCheckpoint: envelope.incarnation != nil
            )
            claimed.envelope = envelope
            batch.handoffs.append(claimed)
            logger.debug("handoff claimed", metadata: metadata)
        } else {
            logger.debug("handoff claimed by another participant", metadata: metadata)
        }
    }

    /// A chunk manifest (docs/PROTOCOL.md §12): its state exists only once its chunks are read, which only the claim's winner
    /// does. So it is claimed first, then assembled and read; whatever fails after the claim dead-letters the whole handoff
    /// (its manifest verbatim; the chunks stay), never a part of it.
    private func processChunked(
        _ envelope: HandoffEnvelope, _ chunking: any HandoffChunking, into batch: inout HandoffBatch<State>, metadata: Logger.Metadata
    ) async throws {
        var metadata = metadata
        do {
            try chunking.checkManifest(envelope)
        } catch {
            if error.reason == .unsupportedFormat {
                let firstReport = reportedDeferred.withLock { $0.insert(envelope.id).inserted }
                guard firstReport else { return }
                let rejection = HandoffRejection(
                    label: label, id: envelope.id.rawValue, reason: error.reason, detail: error.detail, disposition: .leftInPlace)
                logger.warning("\(rejection)", metadata: metadata)
                batch.deferred.append(rejection)
                return
            }
            try await reject(envelope, reason: error.reason, detail: error.detail, into: &batch, metadata: &metadata)
            return
        }
        guard try await transport.claim(envelope, timeout: timeout) else {
            logger.debug("handoff claimed by another participant", metadata: metadata)
            return
        }
        let whole: HandoffEnvelope
        do {
            whole = try await chunking.assemble(envelope, timeout: timeout)
        } catch let error as HandoffError where error.code == .unreadableEnvelope {
            // Only a handoff unreadable as a whole is dead-lettered: when the chunks could not be read at all, the
            // transport gave the manifest back (it waits again) and the error goes to the caller.
            try await reject(envelope, reason: error.reason, detail: error.detail, into: &batch, metadata: &metadata)
            return
        }
        let state: State
        do {
            state = try read(whole)
        } catch {
            try await reject(whole, reason: error.reason, detail: error.detail, into: &batch, metadata: &metadata)
            return
        }
        var claimed = ClaimedHandoff(
            id: whole.id, label: label, vsn: whole.vsn, state: state, createdAt: whole.createdAt, origin: whole.origin, isCheckpoint: false
        )
        claimed.envelope = whole
        batch.handoffs.append(claimed)
        metadata["handoff.bytes"] = "\(whole.data.count)"
        logger.debug("chunked handoff claimed and assembled", metadata: metadata)
    }

    private func reject(
        _ envelope: HandoffEnvelope, reason: HandoffRejection.Reason, detail: String, into batch: inout HandoffBatch<State>,
        metadata: inout Logger.Metadata
    ) async throws {
        let rejection = HandoffRejection(label: label, id: envelope.id.rawValue, reason: reason, detail: detail, disposition: .deadLettered)
        try await deadLetter(envelope, reason: reason, detail: detail)
        metadata["handoff.reason"] = "\(reason.rawValue)"
        logger.warning("\(rejection)", metadata: metadata)
        batch.rejected.append(rejection)
    }

    /// Passes `envelope` to the transport's dead letters: the one way this channel and `HandoffService` dead-letter.
    package func deadLetter(_ envelope: HandoffEnvelope, reason: HandoffRejection.Reason, detail: String) async throws {
        try await transport.deadLetter(envelope, reason: reason, detail: detail, timeout: timeout)
    }

    /// The envelope of a claimed handoff that must be kept (its merge threw): the payload as the transport received it (a
    /// checkpoint keeps its incarnation, and so its topic), never re-encoded from the state, which may have been migrated.
    /// Only a handoff made by hand, that no transport delivered, is encoded from its state.
    package func receivedEnvelope(of handoff: ClaimedHandoff<State>) throws(HandoffError) -> HandoffEnvelope {
        if let envelope = handoff.envelope { return envelope }
        return HandoffEnvelope(
            id: handoff.id, label: label, vsn: version, createdAt: handoff.createdAt, origin: handoff.origin,
            contentType: codec.contentType, data: try encoded(handoff.state)
        )
    }

    /// Tells the transport that the caller merged `handoffs`: the chunks of chunked ones (docs/PROTOCOL.md §12) are removed
    /// from the broker. Until then they stay, so that a handoff given back or dead-lettered keeps its state. `HandoffService`
    /// calls it after every merge; a caller of ``complete()`` or ``handoffs()`` calls it once it merged what it got (not
    /// calling it leaves the chunks stored, never loses a state). Failures are logged, not thrown.
    public func merged(_ handoffs: [ClaimedHandoff<State>]) async {
        guard let chunking = transport as? any HandoffChunking else { return }
        for handoff in handoffs {
            guard let envelope = handoff.envelope else { continue }
            do {
                try await chunking.discardChunks(of: envelope, timeout: timeout)
            } catch {
                logger.warning(
                    "could not remove the chunks of a merged handoff; they stay on the broker",
                    metadata: ["handoff.id": "\(handoff.id)", "handoff.error": "\(error)"]
                )
            }
        }
    }

    /// The envelope's state at the current version, checked.
    private func read(_ envelope: HandoffEnvelope) throws(HandoffError) -> State {
        guard sameMediaType(envelope.contentType, codec.contentType) else {
            throw HandoffError.unreadableState(
                .undecodableState,
                detail: "content type '\(envelope.contentType)' is not this channel's '\(codec.contentType)'"
            )
        }
        let state = try migrations.decode(envelope.data, version: envelope.vsn, codec: codec)
        if let validate {
            do {
                try validate(state)
            } catch {
                throw HandoffError.unreadableState(.validationFailed, detail: String(describing: error))
            }
        }
        return state
    }

    /// The label's handoffs, claimed one at a time as the consumer iterates (see ``ClaimedHandoffs``): iterating
    /// subscribes, each handoff returned is this participant's, and dropping the iterator unsubscribes. Handoffs
    /// that cannot be taken over are deferred or dead-lettered as in ``complete()`` and not returned. This replaces
    /// any stream from ``subscribe()``.
    public func handoffs() -> ClaimedHandoffs<State> {
        ClaimedHandoffs(channel: self)
    }

    /// The waiting handoffs, as ``complete()`` lists them (it also forgets deferred reports of handoffs gone).
    func pendingEnvelopes() async throws -> [HandoffEnvelope] {
        let transport = transport
        let label = label
        let pending = try await withDeadline(timeout, operation: "pending") { try await transport.pending(label) }
        let pendingIDs = Set(pending.map(\.id))
        reportedDeferred.withLock { $0.formIntersection(pendingIDs) }
        return pending
    }

    /// Takes over one waiting handoff as ``complete()`` does: the claimed handoff if this participant won it.
    func takeOver(_ envelope: HandoffEnvelope) async throws -> ClaimedHandoff<State>? {
        var batch = HandoffBatch<State>()
        try await process(envelope, into: &batch)
        return batch.handoffs.first
    }

    /// Logs a rejection the transport reported.
    func log(_ rejection: HandoffRejection) {
        logger.warning("\(rejection)", metadata: ["handoff.id": "\(rejection.id)", "handoff.reason": "\(rejection.reason.rawValue)"])
    }
}

extension HandoffError {
    static func unknownVersionDetail<S>(_ version: Int, migrations: HandoffMigrations<S>) -> String {
        if version > migrations.currentVersion {
            return "written at version \(version), newer than this reader's version \(migrations.currentVersion)"
        }
        let missing = migrations.missingSteps.filter { $0 >= version }.map(String.init).joined(separator: ", ")
        return "written at version \(version); this reader (version \(migrations.currentVersion)) has no "
            + "migration step from version \(missing)"
    }
}
