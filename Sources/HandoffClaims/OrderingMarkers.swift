/// The ordering markers of one participant (docs/PROTOCOL.md §6) without I/O: which marker is in flight, the callers
/// each one answers, and the callers that share the next one.
///
/// Callers that arrive while a marker is in flight share the next marker, published as soon as that one is back (or
/// when the driver's flush timer fires): a marker published after a caller arrived answers it just as well, and
/// watching 10,000 labels at once then sends a few markers instead of 10,000. `Waiter` is whatever the driver resumes
/// (a continuation); this type only hands waiters back.
package struct OrderingMarkers<Waiter> {
    /// What the driver does for a new caller.
    package enum Request {
        /// Shut down: fail the caller.
        case shutDown
        /// Publish the marker with this nonce on the participant's sync topic.
        case publish(String)
        /// The caller is the first to wait for the next marker: arm the flush timer (progress even if the marker in
        /// flight is slow or lost).
        case armFlush
        /// The caller shares the next marker, already due.
        case wait
    }

    private var answering: [String: [Waiter]] = [:]
    private var inFlight: String?
    private var queued: [Waiter] = []
    private var next: UInt64 = 1
    private var isShutDown = false

    package init() {}

    /// Unique among this participant's markers (its sync topic is its own); no UUID: on Linux each one opens
    /// /dev/urandom.
    private mutating func nextNonce() -> String {
        defer { next += 1 }
        return "sync-\(next)"
    }

    /// A caller waits for a marker.
    package mutating func request(_ waiter: Waiter) -> Request {
        guard !isShutDown else { return .shutDown }
        guard inFlight != nil else {
            let nonce = nextNonce()
            inFlight = nonce
            answering[nonce] = [waiter]
            return .publish(nonce)
        }
        queued.append(waiter)
        return queued.count == 1 ? .armFlush : .wait
    }

    /// The marker `nonce` came back (or could not be sent): returns its callers to answer, and the nonce of the next
    /// marker to publish for the callers queued meanwhile, if any.
    package mutating func done(_ nonce: String) -> (waiters: [Waiter], next: String?) {
        let waiters = answering.removeValue(forKey: nonce) ?? []
        guard inFlight == nonce else { return (waiters, nil) }
        inFlight = nil
        return (waiters, flush())
    }

    /// Moves the queued callers to a new marker in flight; returns its nonce to publish (`nil`: nobody queued).
    package mutating func flush() -> String? {
        guard !queued.isEmpty, !isShutDown else { return nil }
        let nonce = nextNonce()
        answering[nonce] = queued
        queued = []
        inFlight = nonce
        return nonce
    }

    /// Ends the markers: returns every caller still waiting, to fail.
    package mutating func shutDown() -> [Waiter] {
        isShutDown = true
        defer {
            answering = [:]
            queued = []
            inFlight = nil
        }
        return answering.values.flatMap { $0 } + queued
    }
}
