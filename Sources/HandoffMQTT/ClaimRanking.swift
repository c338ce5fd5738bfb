import Crypto
import Foundation
import Handoff
import HandoffClaims
import MosquittoClient
import Synchronization

extension MQTTHandoffTransport {
    /// How successors stagger their merge claims (docs/PROTOCOL.md §5, "Ranked claims").
    ///
    /// Without ranking every successor that wants a handoff claims it at once: with K successors a handoff costs K claims,
    /// each delivered to all K (K + K² messages). With rendezvous ranking each successor computes the same order of the
    /// instances it knows to be online for each handoff; the first-ranked claims at once, the one of rank r waits up to
    /// `min(r, maximumSteps) × step` for the verdict and claims only if none came. Any claim is still valid (the first one
    /// decides, §5): ranking only delays, so a first-ranked instance that does not claim (it does not watch the label, is
    /// slow, or its caller never completes) costs the others at most `maximumSteps × step`.
    public struct ClaimRanking: Sendable, Hashable, CustomStringConvertible {
        /// The wait per rank; `.zero`: ranking off.
        public let step: Duration
        /// Ranks beyond this one wait as long as this one.
        public let maximumSteps: Int

        private init(step: Duration, maximumSteps: Int) {
            precondition(step >= .zero && maximumSteps >= 0, "a claim ranking needs a step ≥ 0 and a maximum ≥ 0")
            self.step = step
            self.maximumSteps = maximumSteps
        }

        /// Every successor claims at once (the protocol's plain rule).
        public static let off = ClaimRanking(step: .zero, maximumSteps: 0)

        /// Rank r (0 for the first) waits `min(r, maximumSteps) × step` for a verdict before claiming.
        public static func rendezvous(step: Duration = .milliseconds(3), maximumSteps: Int = 8) -> ClaimRanking {
            ClaimRanking(step: step, maximumSteps: maximumSteps)
        }

        /// Whether any successor waits at all.
        public var isEnabled: Bool { step > .zero && maximumSteps > 0 }

        /// The wait of rank `rank`.
        public func delay(forRank rank: Int) -> Duration {
            guard isEnabled, rank > 0 else { return .zero }
            return step * min(rank, maximumSteps)
        }

        public var description: String {
            isEnabled ? "rendezvous(step: \(step), maximumSteps: \(maximumSteps))" : "off"
        }
    }
}

/// The instances this participant knows to be online, from their statuses on `{prefix}/instances/+` (docs/PROTOCOL.md
/// §9.1): the candidates of the claim ranking. Only statuses say who is online, not who watches which label: a candidate
/// that does not claim costs the others the capped wait, never a handoff.
final class ClaimCandidates: Sendable {
    private struct Member {
        var incarnation: Int
        var online: Bool
    }

    private let members = Mutex<[String: Member]>([:])
    private let own: String

    init(own: String) {
        self.own = own
    }

    /// A message on the status topic of `instance`: a zero-length one (a removed status) drops it; a status counts if
    /// its incarnation is the highest seen, and at an equal incarnation a death notice beats a birth or heartbeat.
    func observe(instance: String, payload: Data) {
        guard instance != own else { return }
        guard !payload.isEmpty else {
            members.withLock { _ = $0.removeValue(forKey: instance) }
            return
        }
        guard let status = InstanceStatus.decode(payload, on: instance) else { return }
        let online = status.state == .online
        members.withLock { members in
            if let known = members[instance],
                known.incarnation > status.incarnation || (known.incarnation == status.incarnation && !known.online)
            {
                return
            }
            members[instance] = Member(incarnation: status.incarnation, online: online)
        }
    }

    /// After a reconnect: the statuses are read again (a status removed while this participant was away would
    /// otherwise stay a candidate).
    func reset() {
        members.withLock { $0.removeAll() }
    }

    /// The other instances online now.
    func online() -> [String] {
        members.withLock { members in members.compactMap { $0.value.online ? $0.key : nil } }
    }

    /// The rank (0: first) of this participant for round id `id`, among itself and the instances online, without
    /// `origin` (who never claims its own handoff).
    func rank(id: String, origin: String) -> Int {
        members.withLock { members in
            guard !members.isEmpty else { return 0 }
            let mine = Self.score(id: id, instance: own)
            var rank = 0
            for (other, member) in members where member.online && other != origin {
                if Self.ranks(Self.score(id: id, instance: other), other, above: mine, own) { rank += 1 }
            }
            return rank
        }
    }

    /// SHA-256 of the UTF-8 bytes of `id`, one 0x00 byte, and the UTF-8 bytes of `instance` (docs/PROTOCOL.md §5).
    static func score(id: String, instance: String) -> SHA256.Digest {
        var hasher = SHA256()
        var id = id
        var instance = instance
        id.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        withUnsafeBytes(of: UInt8(0)) { hasher.update(bufferPointer: $0) }
        instance.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        return hasher.finalize()
    }

    /// Higher scores (compared as unsigned big-endian numbers, i.e. byte by byte) rank first; equal scores by the
    /// instance id's UTF-8 bytes, lower first.
    static func ranks(_ score: SHA256.Digest, _ instance: String, above other: SHA256.Digest, _ otherInstance: String) -> Bool {
        let order = score.withUnsafeBytes { lhs in other.withUnsafeBytes { rhs in memcmp(lhs.baseAddress!, rhs.baseAddress!, lhs.count) } }
        if order != 0 { return order > 0 }
        return instance.utf8.lexicographicallyPrecedes(otherInstance.utf8)
    }
}

/// Ranked claims (docs/PROTOCOL.md §5, "Ranked claims"): a merge claim of rank r > 0 registers its waiter at once, like
/// any claim, and publishes only once its wait is over, unless the verdict (another's claim) answered it first. Until
/// it is published nothing is in flight: stopping, a lost session, a cancellation or a new round end the wait without a
/// claim, and the handoff stays waiting.
extension HandoffRouter {
    /// How long this participant waits before claiming `envelope` for merging; `.zero`: at once. Never more than half of
    /// the claim's time limit, so that the limit always covers the published claim's round trip.
    func rankedDelay(for envelope: HandoffEnvelope, timeout: Duration) -> Duration {
        let ranking = options.claimRanking
        guard ranking.isEnabled else { return .zero }
        let rank = candidates.rank(id: envelope.id.rawValue, origin: envelope.origin.instance)
        return min(ranking.delay(forRank: rank), timeout / 2)
    }

    /// The ranked wait of claim `token` is over: publishes the claim, unless its waiter was answered meanwhile (a
    /// verdict, a cancellation), a new round replaced the handoff (it is offered again), or its label is stopping.
    func publishRankedClaim(topic: String, token: UInt64, label: HandoffLabel, id: String, properties: MQTTPublishProperties) {
        switch state.withLock({ $0.machine.rankedTurn(label, id, token: token) }) {
        case .none: break
        case .answer(let result): answer(token, result)
        case .publish:
            client.publish(topic, payload: Data(), qos: .atLeastOnce, retain: true, properties: properties) { [self] result in
                guard case .failure(let error) = result else { return }
                // The clear did not go out: the handoff is still waiting and may be claimed again.
                abandonClaim(label, id, token: token, error: error, unpublished: true)
            }
        }
    }
}
