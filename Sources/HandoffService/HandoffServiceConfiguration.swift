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

        /// Creates a configuration; every parameter has the default described on its property.
        public init(
            shutdownBudget: Duration = .seconds(5),
            operationTimeout: Duration = .seconds(5),
            retryDelay: Duration = .milliseconds(500),
            codec: any HandoffStateCodec = JSONStateCodec(),
            fallbackDirectory: URL? = nil,
            metricsFactory: (any MetricsFactory)? = nil
        ) {
            self.shutdownBudget = shutdownBudget
            self.operationTimeout = operationTimeout
            self.retryDelay = retryDelay
            self.codec = codec
            self.fallbackDirectory = fallbackDirectory
            self.metricsFactory = metricsFactory
        }
    }
}
