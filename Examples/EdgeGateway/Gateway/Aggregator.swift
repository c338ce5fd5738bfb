import EdgeGatewayKit
import Foundation
import Handoff
import HandoffService

/// The gateway's state: per-sensor counts, min/max/mean and last-seen times. It is a handoff participant, so the
/// state moves to the standby when the primary is told to stop, and (with checkpoints) when the primary is killed:
/// then the standby merges the primary's last checkpoint instead.
actor Aggregator: HandoffParticipant {
    nonisolated let handoffLabel: HandoffLabel
    var handoffState = GatewayState()
    /// Per sensor the record that has seen more of the stream wins (SensorStats is HandoffMergeable), so a
    /// handoff merged twice would change nothing.
    static let handoffMergeStrategy = MergeableStrategy<GatewayState>()

    /// How this gateway took over, once it has.
    private(set) var takeover: Takeover?
    /// Reports the takeover (the standby starts consuming telemetry only after it).
    nonisolated let takeovers: AsyncStream<Takeover>
    private let takeoverContinuation: AsyncStream<Takeover>.Continuation

    /// Reports that the standby took this gateway's state over while it ran (it was partitioned from the broker
    /// longer than the Will delay): it must stop consuming, the standby owns the readings now.
    nonisolated let fencings: AsyncStream<HandoffFencing>
    private let fencingContinuation: AsyncStream<HandoffFencing>.Continuation

    init(label: HandoffLabel) {
        handoffLabel = label
        (takeovers, takeoverContinuation) = AsyncStream.makeStream(of: Takeover.self, bufferingPolicy: .bufferingNewest(1))
        (fencings, fencingContinuation) = AsyncStream.makeStream(of: HandoffFencing.self, bufferingPolicy: .bufferingNewest(1))
    }

    func handoffOwnershipLost(_ fencing: HandoffFencing) {
        fencingContinuation.yield(fencing)
    }

    /// Counts a reading unless its sequence number was counted already (a QoS 1 redelivery).
    func record(_ reading: Reading) {
        handoffState[reading.sensor, default: SensorStats()].record(reading)
    }

    /// Readings counted per sensor.
    var counted: [String: Int] { handoffState.mapValues(\.count) }

    /// The sequence number of the last reading counted, per sensor.
    var lastSeq: [String: Int] { handoffState.mapValues(\.lastSeq) }

    func didMergeHandoffs(_ handoffs: [ClaimedHandoff<GatewayState>]) {
        guard let last = handoffs.last else { return }
        let takeover = Takeover(
            handoffID: last.id.rawValue,
            from: last.origin.instance,
            readings: handoffs.reduce(0) { $0 + $1.state.totalReadings },
            mergedAt: Date().timeIntervalSince1970,
            fromCheckpoint: last.isCheckpoint,
            createdAt: last.createdAt.timeIntervalSince1970
        )
        self.takeover = takeover
        takeoverContinuation.yield(takeover)
    }
}
