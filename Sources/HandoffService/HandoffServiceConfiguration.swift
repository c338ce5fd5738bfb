import Foundation
import Handoff
import Metrics

extension HandoffService {
    /// Settings of a ``HandoffService``.
    public struct Configuration: Sendable {
        /// The time a graceful shutdown may take, from the shutdown signal until every handoff is acknowledged (the
        /// original's `shutdown: 5_000` in the child spec). It includes finishing a merge in progress. Keep it
        /// below the time your orchestrator waits between SIGTERM and SIGKILL (Kubernetes:
        /// `terminationGracePeriodSeconds`, 30 s by default), minus what your other services need.
        public var shutdownBudget: Duration
        /// The time budget of each transport operation while running (subscribe, list, claim, dead-letter).
        public var operationTimeout: Duration
        /// How long to wait before retrying a subscription or a take-over that failed.
        public var retryDelay: Duration
        /// How states are turned into bytes; JSON by default. Successors must use the same codec.
        public var codec: any HandoffStateCodec
        /// Where to write the envelopes of handoffs that were not acknowledged at shutdown (see
        /// ``HandoffFallbackStore``); `nil` (the default) writes nothing and the error log is the only trace.
        public var fallbackDirectory: URL?
        /// The metrics backend; `nil` (the default) uses the process's `MetricsSystem` (the library never
        /// bootstraps one).
        public var metricsFactory: (any MetricsFactory)?
        /// How often every participant's state is checkpointed while the service runs, so that a crash (SIGKILL,
        /// OOM kill, power loss) loses at most this much: successors merge the last checkpoint of a process that
        /// died without handing off. Needs a transport that keeps checkpoints (``HandoffCheckpointing``, such as
        /// `MQTTHandoffTransport`). `nil` (the default): no checkpoints, a crash hands off nothing.
        public var checkpointInterval: Duration?
        /// Whether a state equal to the participant's last checkpoint is skipped (the default) or sent again.
        public var checkpointOnlyWhenChanged: Bool
        /// How many participants are checkpointed at once (their publishes are pipelined).
        public var checkpointConcurrency: Int

        /// Creates a configuration; every parameter has the default described on its property.
        public init(
            shutdownBudget: Duration = .seconds(5),
            operationTimeout: Duration = .seconds(5),
            retryDelay: Duration = .milliseconds(500),
            codec: any HandoffStateCodec = JSONStateCodec(),
            fallbackDirectory: URL? = nil,
            metricsFactory: (any MetricsFactory)? = nil,
            checkpointInterval: Duration? = nil,
            checkpointOnlyWhenChanged: Bool = true,
            checkpointConcurrency: Int = 64
        ) {
            precondition(checkpointInterval.map { $0 > .zero } ?? true, "the checkpoint interval must be positive")
            precondition(checkpointConcurrency >= 1, "checkpointConcurrency must be at least 1")
            self.checkpointInterval = checkpointInterval
            self.checkpointOnlyWhenChanged = checkpointOnlyWhenChanged
            self.checkpointConcurrency = checkpointConcurrency
            self.shutdownBudget = shutdownBudget
            self.operationTimeout = operationTimeout
            self.retryDelay = retryDelay
            self.codec = codec
            self.fallbackDirectory = fallbackDirectory
            self.metricsFactory = metricsFactory
        }
    }
}
