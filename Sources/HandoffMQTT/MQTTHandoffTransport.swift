import AsyncCompletion
import Foundation
import Handoff
import HandoffClaims
import Logging
import MosquittoClient
import Synchronization

/// The global handoff backend: handoffs live as retained messages on an MQTT broker (the original's
/// `Handoff.Global`). Implements the protocol of docs/PROTOCOL.md.
///
/// ```swift
/// let transport = try await MQTTHandoffTransport.connect(
///     configuration: try MQTTConfiguration(url: "mqtt://127.0.0.1:1883"))
/// let channel = HandoffChannel<Counter>(label: try HandoffLabel("counter"), transport: transport)
/// ```
///
/// One transport (one broker connection) serves any number of labels and channels in a process.
public final class MQTTHandoffTransport: HandoffTransport {
    /// Settings of the MQTT backend.
    public struct Options: Sendable {
        /// Topic prefix shared by all participants that should see each other's handoffs.
        public var prefix: String
        /// Payloads larger than this are not decoded but dead-lettered as `too-large`.
        public var maximumPayloadSize: Int
        /// MQTT 5 message expiry for waiting handoffs (sent in whole seconds, rounded up); `nil` keeps them until claimed.
        public var handoffExpiry: Duration?
        /// How long the broker keeps this participant's session (and queues its messages) while it is
        /// disconnected. A claim interrupted by a disconnect is resolved on reconnect within this time.
        /// Sent in whole seconds, rounded up.
        public var sessionExpiry: Duration
        /// How long stopping (``MQTTHandoffTransport/unwatch(_:)``, ``MQTTHandoffTransport/shutdown()``) waits
        /// for the verdicts of this participant's claims in flight, and then for the broker to store the handoffs
        /// it gives back or dead-letters (see ``Settlement``).
        public var settleTimeout: Duration
        /// How long ``MQTTHandoffTransport/watch(_:)`` waits for the first SUBSCRIBE's retained handoffs and for the
        /// ordering marker after them. A watch through a ``HandoffChannel`` is bounded sooner by the channel's timeout;
        /// this ends one that nobody bounds.
        public var watchTimeout: Duration
        /// The time limit of each of the transport's own operations that no caller waits for: each step of announcing
        /// this participant after a connect (reading its own status back, publishing its birth; a failed announcement
        /// is retried), and the dead letters it writes on its own (a message on a handoff topic that is not a readable
        /// handoff, a claim whose outcome became unknown).
        public var operationTimeout: Duration
        /// The MQTT 5 Will Delay Interval (sent in whole seconds, rounded up) of the death notice on `{prefix}/instances/{instance}` that
        /// releases this participant's checkpoints to successors when its connection dies without a DISCONNECT
        /// (docs/PROTOCOL.md §9). A reconnect within the delay suppresses it. `nil`: no Will, no birth and no
        /// checkpoints (``MQTTHandoffTransport/checkpoint(_:onlyIfChanged:timeout:)`` throws).
        public var willDelay: Duration?
        /// How long a participant may go unheard before successors holding its checkpoints declare it dead, in case
        /// its Will was lost (mosquitto 2.0 keeps delayed Wills in memory only: a broker restart during the delay
        /// loses them). Each participant repeats its birth (not retained) every third of it. `nil`: no heartbeats
        /// and no declarations (a lost Will then leaves the checkpoints held until an operator releases them).
        public var livenessLease: Duration?
        /// The keys of this prefix (docs/PROTOCOL.md §10): with a key set, every envelope and claim this participant
        /// writes is signed (and its data encrypted if the set ``HandoffKeySet/encrypts``), unsigned or wrongly signed
        /// handoffs are dead-lettered as `signature-invalid`, and claims that do not verify decide nothing. All
        /// participants of a prefix need key sets that read each other's writing keys. `nil`: nothing is signed.
        public var keys: HandoffKeySet?
        /// The most payload bytes kept for labels that this participant does not watch (its one subscription per prefix
        /// delivers every label's handoffs: they are kept so that watching a label later needs no subscription of its
        /// own). Over it, they are dropped, and the next watch of such a label reads the retained messages again.
        public var trackedBytesLimit: Int
        /// Who decides the winner of each handoff (docs/PROTOCOL.md §11). `nil` (the default): the broker's single order
        /// per topic (§5), right for a single-node broker such as mosquitto. On a clustered broker (EMQX, VerneMQ,
        /// HiveMQ, ejabberd), whose nodes deliver claims in different orders, use a store's atomic take instead, such as
        /// `RedisClaimArbiter` (module HandoffRedis). Checkpoints (§9) are still claimed by the broker's order.
        public var arbiter: (any HandoffClaimArbiter)?
        /// States whose data (as stored: after encryption) is longer than this many bytes are handed off in chunks of it plus
        /// a manifest (docs/PROTOCOL.md §12), so that no message exceeds what brokers accept (AWS IoT Core: 128 KB, EMQX: 1 MB
        /// by default). Smaller states are sent whole, as before. Every successor reads chunks of any size.
        public var chunkSize: Int
        /// How successors stagger their merge claims (docs/PROTOCOL.md §5, "Ranked claims"). The default,
        /// ``ClaimRanking/rendezvous(step:maximumSteps:)`` with 3 ms steps up to 8, ranks this participant among the
        /// instances whose statuses say they are online (so it needs ``willDelay``; without statuses it claims at once):
        /// the first-ranked claims at once, the others only if no verdict came within their rank's wait. A handoff then
        /// costs about one claim instead of one per successor. ``ClaimRanking/off``: every successor claims at once. Claims
        /// decided by an ``arbiter`` are never ranked (the store, not the broker's fan-out, decides them).
        public var claimRanking: ClaimRanking

        public init(
            prefix: String = "handoff",
            maximumPayloadSize: Int = 64 * 1024 * 1024,
            handoffExpiry: Duration? = nil,
            sessionExpiry: Duration = .seconds(300),
            settleTimeout: Duration = .seconds(2),
            watchTimeout: Duration = .seconds(60),
            operationTimeout: Duration = .seconds(10),
            willDelay: Duration? = .seconds(5),
            livenessLease: Duration? = .seconds(30),
            keys: HandoffKeySet? = nil,
            arbiter: (any HandoffClaimArbiter)? = nil,
            trackedBytesLimit: Int = 64 * 1024 * 1024,
            chunkSize: Int = 256 * 1024,
            claimRanking: ClaimRanking = .rendezvous()
        ) {
            precondition(chunkSize >= 1, "the chunk size must be positive")
            self.chunkSize = chunkSize
            precondition(livenessLease.map { $0 > .zero } ?? true, "the liveness lease must be positive")
            precondition(
                willDelay.map { $0 >= .zero && $0 <= sessionExpiry } ?? true,
                "the session expiry must be at least the Will delay (the broker sends a Will when the session ends)"
            )
            self.livenessLease = livenessLease
            self.prefix = prefix
            self.maximumPayloadSize = maximumPayloadSize
            self.handoffExpiry = handoffExpiry
            self.sessionExpiry = sessionExpiry
            self.settleTimeout = settleTimeout
            self.watchTimeout = watchTimeout
            self.operationTimeout = operationTimeout
            self.willDelay = willDelay
            self.keys = keys
            self.arbiter = arbiter
            self.trackedBytesLimit = trackedBytesLimit
            self.claimRanking = claimRanking
        }
    }

    /// What stopping did with the handoffs this participant held and nobody else would: a stopping participant
    /// merges (through its callers), gives back or dead-letters every handoff it won, never drops one
    /// (docs/PROTOCOL.md §5, "Stopping").
    public struct Settlement: Sendable {
        /// Won and not handed to a caller (its claim had been cancelled or had timed out): published again as
        /// received, waiting for another participant.
        public var returned: [HandoffEnvelope] = []
        /// Claimed, but no verdict arrived in time: moved to the dead letters as `claim-outcome-unknown` (if this
        /// participant did win, nobody merged it; if another did, the dead letter is a redundant copy).
        public var deadLettered: [HandoffEnvelope] = []
        /// Neither was acknowledged in time: the caller may be the only one holding them, or the publish may still
        /// have reached the broker (check before republishing one, as for any fallback file).
        /// ``MQTTHandoffTransportService`` writes them to its fallback directory.
        public var unstored: [HandoffEnvelope] = []

        /// Whether stopping held nothing.
        public var isEmpty: Bool { returned.isEmpty && deadLettered.isEmpty && unstored.isEmpty }
    }

    public let origin: HandoffOrigin
    /// The topic layout in use.
    public let topics: HandoffTopics
    /// The broker connection (owned by the transport).
    public let client: MQTTClient
    /// The executor of the broker connection's own thread (``MosquittoClient/MQTTClient/executor``): a successor's
    /// task that prefers it (`withTaskExecutorPreference(transport.executor)`) is resumed by a notice or a verdict
    /// right where the message was read, without a thread hop, and its claim is written to the socket at once. For
    /// short work: a long merge there delays every message of the connection. `HandoffService` uses it for its
    /// participants' merges.
    public var executor: any TaskExecutor { client.executor }
    let router: HandoffRouter
    private let tasks: [Task<Void, Never>]
    let logger: Logger
    /// This participant's own checkpoints and fencing.
    let book = CheckpointBook()
    /// The readers of chunked handoffs being assembled, and the chunks of the assembled ones (docs/PROTOCOL.md §12).
    let chunkReaders = ChunkReaders()
    /// Unwatches still giving back or dead-lettering what they held: shutdown waits for them before it disconnects.
    private let settlingUnwatches = Mutex(0)
    /// The SUBSCRIBE of the wildcard filters, made by the first watch (`nil`: not yet, or it failed).
    private let wildcardSubscription = Mutex<Task<Void, any Error>?>(nil)

    /// Connects to the broker and starts routing handoff messages.
    ///
    /// The connection uses a persistent session (clean start off, ``Options/sessionExpiry``) with the client
    /// id `handoff-<origin.instance>`, so that the verdict of a claim interrupted by a lost connection is
    /// delivered after the reconnect. Each connection carries a Will on `{prefix}/instances/{instance}` (see
    /// ``Options/willDelay``), and after each connect the participant publishes its birth there.
    ///
    /// The transport sets these fields of `configuration`: `protocolVersion` (5), `clientID` (`handoff-{instance}`),
    /// `cleanStart` (false), `sessionExpiry` (``Options/sessionExpiry``) and `will` (its own). A value given
    /// that differs is replaced, and a warning names it.
    public static func connect(
        configuration: MQTTConfiguration,
        options: Options = Options(),
        origin: HandoffOrigin = .current(),
        logger: Logger = Logger(label: "handoff.mqtt")
    ) async throws -> MQTTHandoffTransport {
        let topics = try HandoffTopics(prefix: options.prefix)
        let configuration = Self.withProtocolFields(configuration, options: options, origin: origin, logger: logger)
        let client = try MQTTClient(configuration: configuration, logger: logger)
        if let willDelay = options.willDelay {
            let (topic, instance) = (topics.instance(origin.instance), origin.instance)
            client.setWillProvider { connection in
                MQTTConfiguration.Will(
                    topic: topic, payload: InstanceStatus.dead(instance, incarnation: Int(connection)).encoded(), qos: .atLeastOnce,
                    retain: true, properties: MQTTPublishProperties(contentType: "application/json"), delay: willDelay
                )
            }
        }
        let transport = MQTTHandoffTransport(client: client, topics: topics, options: options, origin: origin, logger: logger)
        do {
            try await client.connect()
            _ = try await client.subscribe(topics.sync(instance: origin.instance), options: MQTTSubscribeOptions(qos: .atLeastOnce))
            try await transport.announce()
            transport.startHeartbeat()
        } catch {
            await transport.shutdown()
            throw error
        }
        return transport
    }

    /// `configuration` with the fields the protocol needs, and a warning naming each given value that was replaced.
    private static func withProtocolFields(
        _ given: MQTTConfiguration, options: Options, origin: HandoffOrigin, logger: Logger
    ) -> MQTTConfiguration {
        var configuration = given
        configuration.protocolVersion = .v5
        configuration.clientID = "handoff-\(origin.instance)"
        configuration.cleanStart = false
        configuration.sessionExpiry = options.sessionExpiry
        configuration.will = nil
        // Warned about: values given on purpose (not the defaults) that differ from the protocol's. The default clean start
        // (true) is replaced silently: every MQTT client starts that way unless told otherwise.
        let defaults = MQTTConfiguration(host: given.host, port: given.port)
        var replaced: [String] = []
        if given.protocolVersion != configuration.protocolVersion { replaced.append("protocolVersion") }
        if let clientID = given.clientID, clientID != configuration.clientID { replaced.append("clientID") }
        if given.sessionExpiry != defaults.sessionExpiry, given.sessionExpiry != configuration.sessionExpiry {
            replaced.append("sessionExpiry")
        }
        if given.will != nil { replaced.append("will") }
        if !replaced.isEmpty {
            logger.warning(
                "the handoff transport replaced MQTTConfiguration fields that its protocol sets (docs/PROTOCOL.md §5, §9)",
                metadata: ["mqtt.replaced_fields": "\(replaced.joined(separator: ", "))"]
            )
        }
        return configuration
    }

    private init(client: MQTTClient, topics: HandoffTopics, options: Options, origin: HandoffOrigin, logger: Logger) {
        self.client = client
        self.topics = topics
        self.origin = origin
        self.logger = logger
        let router = HandoffRouter(client: client, topics: topics, options: options, origin: origin, logger: logger)
        self.router = router
        // Installed before connect() so that nothing the broker sends is missed. Messages are routed on
        // libmosquitto's network thread, in the order received, without a hop to a task.
        let chunkReaders = chunkReaders
        client.setMessageHandler { message in
            // The chunks a claim's winner reads (docs/PROTOCOL.md §12) go to their reader, not to the router.
            guard !chunkReaders.route(message) else { return }
            router.route(message)
        }
        let book = book
        router.ownershipLost.withLock {
            $0 = { loss in
                for fencing in book.record(loss) {
                    logger.error(
                        "This participant no longer owns a label's state: successors took over its checkpoint. It stops checkpointing it and must not hand it off",
                        metadata: ["handoff.label": "\(fencing.label)", "handoff.reason": "\(fencing.reason)"]
                    )
                }
            }
        }
        router.ownCheckpointCleared.withLock {
            $0 = { label in
                logger.warning(
                    "This participant's checkpoint was cleared by a message that is not a claim; the next one is written again",
                    metadata: ["handoff.label": "\(label)"])
                book.forgetStored(label)
            }
        }
        let events = client.events()
        let announcing = announcing
        let announcer = Announcer(
            client: client, topics: topics, router: router, book: book, instance: origin.instance, enabled: options.willDelay != nil,
            logger: logger)
        self.announcer = announcer
        self.tasks = [
            Task {
                for await event in events {
                    router.connectionChanged(event)
                    switch event {
                    case .connected(_, reconnect: true):
                        // In a task of its own: the next connection event must not wait for this one's broker round trips.
                        announcing.replace(with: Task { await announcer.announceRetrying() })
                    case .disconnected:
                        book.setWritable(nil)
                    default:
                        break
                    }
                }
            }
        ]
    }

    private let announcer: Announcer
    /// The announcement after the latest reconnect, while it runs.
    private let announcing = TaskSlot()
    /// Repeats the birth and declares silent instances dead (``Options/livenessLease``).
    private let heartbeat = TaskSlot()

    fileprivate func startHeartbeat() {
        guard router.options.willDelay != nil, let lease = router.options.livenessLease else { return }
        let (client, topics, router, book, instance, logger) = (self.client, topics, router, book, origin.instance, logger)
        let task = Task {
            while true {
                do { try await Task.sleep(for: lease / 3) } catch { return }
                if let incarnation = book.writableIncarnation {
                    let beat = InstanceStatus.online(instance, incarnation: incarnation, released: book.releasedThrough)
                    try? await client.publish(topics.instance(instance), payload: beat.encoded(), qos: .atMostOnce)
                }
                guard !router.silentInstances(lease: lease).isEmpty else { continue }
                // Heartbeats already queued for this participant (after a pause of its own, say) count first.
                guard (try? await router.sync(timeout: lease / 3)) != nil, !Task.isCancelled else { continue }
                for notice in router.silentInstances(lease: lease) {
                    logger.warning(
                        "Declaring an instance dead: not heard from within the liveness lease (its Will may have been lost); its checkpoints are released",
                        metadata: [
                            "handoff.instance": "\(notice.instance)", "handoff.incarnation": "\(notice.incarnation)",
                            "handoff.lease": "\(lease)",
                        ]
                    )
                    try? await client.publish(topics.instance(notice.instance), payload: notice.encoded(), qos: .atLeastOnce, retain: true)
                }
            }
        }
        heartbeat.replace(with: task)
    }

    /// Reads this participant's own status back, then publishes its birth and allows checkpoints (see ``Announcer``).
    func announce() async throws {
        try await announcer.announce()
    }

    /// Disconnects from the broker. First it waits (at most ``Options/settleTimeout``) for the verdicts of this
    /// participant's claims in flight; the handoffs it won and nobody merged are given back, claims without a
    /// verdict dead-lettered (the returned ``Settlement`` lists them). Then waiting calls fail with
    /// ``HandoffError/shutdown``. Cancelling the caller does not cut the settling short.
    @discardableResult
    public func shutdown() async -> Settlement {
        let (router, timeout) = (self.router, router.options.settleTimeout)
        heartbeat.replace(with: nil)
        announcing.replace(with: nil)
        let settlement = await Task {
            let deadline = ContinuousClock.now + timeout
            let unsettled = await router.shutDown(settlingWithin: timeout)
            let settlement = await self.settle(unsettled, until: deadline)
            // An unwatch that took its label's handoffs before the router stopped is still giving them back.
            while self.settlingUnwatches.withLock({ $0 }) > 0, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(5))
            }
            await self.retireStatus(timeout: max(ContinuousClock.now.duration(to: deadline), .milliseconds(500)))
            return settlement
        }.value
        await client.shutdown()
        book.finish()
        for task in tasks { await task.value }
        return settlement
    }

    /// Returns once every message the broker had queued for this participant before the call has been
    /// processed: waiting handoffs, claims and verdicts included (see docs/PROTOCOL.md, "Ordering markers").
    public func sync(timeout: Duration) async throws {
        try await router.sync(timeout: timeout)
    }

    // MARK: - HandoffTransport

    /// Watches `label`. The transport has one subscription per prefix, `{prefix}/handoffs/+/+` (and
    /// `{prefix}/checkpoints/+/+` with checkpoints), made at the first watch: every label's waiting handoffs and rounds
    /// are known from then on (within ``Options/trackedBytesLimit``), so watching another label needs no SUBSCRIBE, only
    /// an ordering marker (shared by the watches that arrive together) to have everything published before it.
    public func watch(_ label: HandoffLabel) async throws -> AsyncStream<HandoffNotice> {
        let (stream, needsRetained) = router.startWatching(label)
        do {
            try await subscribeWildcard(again: needsRetained)
            // Retained handoffs (and checkpoints) are sent right after the SUBACK; the marker comes after them. The caller's
            // time limit (HandoffChannel's) bounds this; Options.watchTimeout only ends a watch nobody bounds.
            try await router.sync(timeout: router.options.watchTimeout)
            // With an arbiter, the store lists what waits: a clustered broker may not deliver a retained message published
            // through another node. Listed after subscribing, so that a handoff published meanwhile arrives live.
            if let arbiter = router.options.arbiter {
                for (id, payload) in try await arbiter.waiting(prefix: topics.prefix, label: label) {
                    router.offerStored(label: label, id: id, payload: payload)
                }
            }
        } catch {
            // A label watched before may hold handoffs won or claimed: they are settled, not dropped.
            await stopWatchingSettled(label)
            throw HandoffError.transportUnavailable("Could not subscribe to handoffs for '\(label)': \(error)", underlying: error)
        }
        return stream
    }

    /// Subscribes the transport's wildcard filters once (the watches that arrive meanwhile wait for the same SUBSCRIBE),
    /// or `again` (the tracked labels' state was dropped: the retained messages are read again).
    private func subscribeWildcard(again: Bool) async throws {
        let filters = [topics.handoffsWildcard] + (router.options.willDelay != nil ? [topics.checkpointsWildcard] : [])
        let (client, router) = (self.client, self.router)
        let task = wildcardSubscription.withLock { current -> Task<Void, any Error> in
            if !again, let current { return current }
            let task = Task {
                for filter in filters { _ = try await client.subscribe(filter, options: MQTTSubscribeOptions(qos: .atLeastOnce)) }
                router.wildcardFilters.withLock { $0 = filters }
                try await router.sync(timeout: router.options.watchTimeout)
                router.retainedReadAgain()
            }
            current = task
            return task
        }
        do {
            try await task.value
        } catch {
            wildcardSubscription.withLock { if $0 == task { $0 = nil } }
            throw error
        }
    }

    /// Stops watching `label`. First it waits (at most ``Options/settleTimeout``) for the verdicts of this
    /// participant's claims in flight for the label; the handoffs it won and nobody merged are given back, claims
    /// without a verdict dead-lettered (see ``Settlement``). Cancelling the caller does not cut this short. The
    /// subscription stays (it is the prefix's): the label is tracked again, as before it was watched.
    public func unwatch(_ label: HandoffLabel) async throws {
        await stopWatchingSettled(label)
    }

    /// Stops routing `label` once its claims in flight have their verdicts, then gives back or dead-letters what
    /// it held; not cut short by the caller's cancellation.
    private func stopWatchingSettled(_ label: HandoffLabel) async {
        let (router, timeout) = (self.router, router.options.settleTimeout)
        // Counted before the router is asked, so that a shutdown that finds the label gone waits for this one.
        settlingUnwatches.withLock { $0 += 1 }
        await Task {
            defer { self.settlingUnwatches.withLock { $0 -= 1 } }
            let deadline = ContinuousClock.now + timeout
            let unsettled = await router.stopWatching(label, settlingWithin: timeout)
            await self.settle(unsettled, until: deadline)
        }.value
    }

    public func pending(_ label: HandoffLabel) async throws -> [HandoffEnvelope] {
        try router.pending(label)
    }

    public func claim(_ envelope: HandoffEnvelope, timeout: Duration) async throws -> Bool {
        try await router.claim(envelope, timeout: timeout)
    }

    public func release(_ envelope: HandoffEnvelope, timeout: Duration) async throws {
        chunkReaders.forgetAssembled(envelope)
        do {
            try await router.returnHandoff(
                label: envelope.label, id: router.key(of: envelope), payload: envelope.encoded(), timeout: timeout)
        } catch let error as MQTTError {
            throw HandoffError.transportUnavailable(
                "Could not give back handoff '\(envelope.label)'/\(envelope.id): \(error)", underlying: error)
        }
        logger.info(
            "Gave back a handoff won but not merged", metadata: ["handoff.label": "\(envelope.label)", "handoff.id": "\(envelope.id)"])
    }

    public func initiate(_ envelope: HandoffEnvelope, timeout: Duration) async throws {
        try await initiate(envelope, sealing: true, timeout: timeout)
    }

    /// Initiates a handoff whose envelope is final already (`handoff republish`: a fallback file, signed or encrypted by
    /// the participant that wrote it): this transport's keys do not seal it again; when it is chunked, they seal its
    /// manifest only. A small one is published verbatim.
    package func initiate(asStored envelope: HandoffEnvelope, timeout: Duration) async throws {
        try await initiate(envelope, sealing: false, timeout: timeout)
    }

    private func initiate(_ envelope: HandoffEnvelope, sealing: Bool, timeout: Duration) async throws {
        let topic = topics.handoff(envelope.label, id: envelope.id.rawValue)
        let properties = MQTTPublishProperties(messageExpiry: router.options.handoffExpiry, contentType: HandoffRouter.contentType)
        // A large state goes first as chunks; what waits on the handoff topic is then its manifest (docs/PROTOCOL.md §12).
        let payload = try await outgoingPayload(of: envelope, sealing: sealing, timeout: timeout)
        // With an arbiter, the store holds it first: that is what successors list and claim (docs/PROTOCOL.md §11).
        try await router.options.arbiter?.store(prefix: topics.prefix, label: envelope.label, id: envelope.id.rawValue, payload: payload)
        // The PUBACK resumes this task directly; the time limit is kept by the shared TimeoutClock.
        let acknowledged = Completion<Void>()
        client.publish(topic, payload: payload, qos: .atLeastOnce, retain: true, properties: properties) { result in
            acknowledged.resume(result)
        }
        try await acknowledged.wait(
            timeLimit: timeout,
            timeoutError: { HandoffError.timeout(operation: "initiate handoff '\(envelope.label)'/\(envelope.id)", after: timeout) }
        )
        logger.debug(
            "Handoff stored on the broker",
            metadata: ["handoff.label": "\(envelope.label)", "handoff.id": "\(envelope.id)", "handoff.bytes": "\(payload.count)"])
    }

    public func deadLetter(_ envelope: HandoffEnvelope, reason: HandoffRejection.Reason, detail: String, timeout: Duration) async throws {
        chunkReaders.forgetAssembled(envelope)
        try await router.deadLetter(
            label: envelope.label, id: router.key(of: envelope), payload: router.rawPayload(of: envelope), reason: reason, detail: detail,
            timeout: timeout
        )
    }

    public func deadLetters(_ label: HandoffLabel, timeout: Duration) async throws -> [DeadLetter] {
        try await router.collectDeadLetters(label, timeout: timeout)
    }
}

extension MQTTHandoffTransport {
    /// Gives back what a stopping participant won and nobody merged, dead-letters its claims without a verdict,
    /// all at once, until `deadline`; logs what could not be stored at error.
    @discardableResult
    fileprivate func settle(_ unsettled: HandoffRouter.Unsettled, until deadline: ContinuousClock.Instant) async -> Settlement {
        guard !unsettled.isEmpty else { return Settlement() }
        enum Done: Sendable {
            case returned(HandoffEnvelope)
            case deadLettered(HandoffEnvelope)
            case unstored(HandoffEnvelope, String)
        }
        let router = self.router
        let timeout = max(ContinuousClock.now.duration(to: deadline), .milliseconds(100))
        var settlement = Settlement()
        await withTaskGroup(of: Done.self) { group in
            for entry in unsettled.won {
                group.addTask {
                    let (envelope, id) = (entry.envelope, entry.key)
                    do {
                        try await router.returnHandoff(label: envelope.label, id: id, payload: entry.payload, timeout: timeout)
                        return .returned(envelope)
                    } catch {
                        return .unstored(envelope, "\(error)")
                    }
                }
            }
            for entry in unsettled.unknown {
                group.addTask {
                    let (envelope, id) = (entry.envelope, entry.key)
                    do {
                        try await router.deadLetter(
                            label: envelope.label, id: id, payload: entry.payload, reason: .claimOutcomeUnknown,
                            detail: "this participant stopped before the verdict of its claim arrived; if it won, nobody merged it",
                            timeout: timeout
                        )
                        return .deadLettered(envelope)
                    } catch {
                        return .unstored(envelope, "\(error)")
                    }
                }
            }
            for await done in group {
                switch done {
                case .returned(let envelope):
                    settlement.returned.append(envelope)
                case .deadLettered(let envelope):
                    settlement.deadLettered.append(envelope)
                case .unstored(let envelope, let error):
                    settlement.unstored.append(envelope)
                    logger.error(
                        "Stopped holding a handoff that could not be given back or dead-lettered: only the caller's settlement keeps it",
                        metadata: ["handoff.label": "\(envelope.label)", "handoff.id": "\(envelope.id)", "handoff.error": "\(error)"]
                    )
                }
            }
        }
        logger.info(
            "Settled the handoffs held when stopping",
            metadata: [
                "handoff.returned": "\(settlement.returned.count)", "handoff.dead_lettered": "\(settlement.deadLettered.count)",
                "handoff.unstored": "\(settlement.unstored.count)",
            ]
        )
        return settlement
    }
}

/// Holds at most one task: a new one cancels the one before.
final class TaskSlot: Sendable {
    private let task = Mutex<Task<Void, Never>?>(nil)

    func replace(with new: Task<Void, Never>?) {
        task.withLock { task in
            task?.cancel()
            task = new
        }
    }
}
