import Logging

/// The handoffs of one label, claimed as the consumer asks for them: what ``HandoffChannel/handoffs()`` returns.
///
/// Iterating subscribes to the label; each call of `next()` claims at most one handoff and returns it once this
/// participant won it, so a handoff is the consumer's as soon as it is returned, and no claimed handoff waits in a
/// buffer that a consumer who stops could drop. Handoffs that cannot be taken over are deferred or dead-lettered
/// as ``HandoffChannel/complete()`` does, and not returned. Iteration ends when the task is cancelled or the watch
/// ends, and throws when the transport fails.
///
/// When the iterator is dropped, the label is unsubscribed; a handoff won by a claim that was cut short (the
/// consumer's task was cancelled while it waited for the verdict) is then given back to the waiting handoffs by the
/// transport, never dropped.
public struct ClaimedHandoffs<State: Codable & Sendable>: AsyncSequence, Sendable {
    public typealias Element = ClaimedHandoff<State>

    let channel: HandoffChannel<State>

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(consumer: HandoffConsumer(channel: channel))
    }

    /// Claims one handoff per `next()`.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: HandoffConsumer<State>

        public func next() async throws -> ClaimedHandoff<State>? {
            try await consumer.next()
        }
    }
}

/// The state of one iteration of ``ClaimedHandoffs``: the subscription, and the handoffs known to wait that it has
/// not tried yet. Used by one task at a time (the iterating one).
final class HandoffConsumer<State: Codable & Sendable> {
    private let channel: HandoffChannel<State>
    private var notices: AsyncStream<HandoffNotice>.AsyncIterator?
    /// The channel's subscription this iteration made.
    private var generation: UInt64 = 0
    /// Waiting handoffs listed by the transport and not tried yet, oldest last (taken with popLast).
    private var queue: [HandoffEnvelope] = []

    init(channel: HandoffChannel<State>) {
        self.channel = channel
    }

    deinit {
        guard notices != nil else { return }
        // Unsubscribing gives back, through the transport, what a cut-short claim won after the consumer left; not if
        // the channel subscribed again since (a new iteration watches now).
        let (channel, generation) = (channel, generation)
        Task { await channel.unsubscribe(ifStill: generation) }
    }

    func next() async throws -> ClaimedHandoff<State>? {
        if notices == nil {
            let (stream, generation) = try await channel.subscribeCounted()
            notices = stream.makeAsyncIterator()
            self.generation = generation
            // What waited before the subscription is known once watch returns.
            queue = try await channel.pendingEnvelopes().reversed()
        }
        while !Task.isCancelled {
            while let envelope = queue.popLast() {
                if let handoff = try await channel.takeOver(envelope) { return handoff }
                if Task.isCancelled { return nil }
            }
            // Nothing left to try: wait for the transport to report more.
            guard let notice = await notices?.next() else { return nil }
            switch notice {
            case .available:
                queue = try await channel.pendingEnvelopes().reversed()
            case .rejected(let rejection):
                channel.log(rejection)
            }
        }
        return nil
    }
}
