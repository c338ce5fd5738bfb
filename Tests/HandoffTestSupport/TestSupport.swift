import Foundation
import Handoff
import MosquittoTestKit
import Synchronization

/// Collects the notices of a watch stream in the background, so tests can wait for them with a deadline.
package final class NoticeRecorder: Sendable {
    private final class Log: Sendable {
        let state = Mutex<(notices: [HandoffNotice], finished: Bool)>(([], false))
    }

    private let log = Log()
    private let task: Task<Void, Never>

    package init(_ stream: AsyncStream<HandoffNotice>) {
        let log = log
        task = Task {
            for await notice in stream {
                log.state.withLock { $0.notices.append(notice) }
            }
            log.state.withLock { $0.finished = true }
        }
    }

    deinit { task.cancel() }

    package var notices: [HandoffNotice] { log.state.withLock { $0.notices } }
    package var isFinished: Bool { log.state.withLock { $0.finished } }
    package var availableCount: Int {
        notices.count { if case .available = $0 { true } else { false } }
    }

    /// Waits until `condition` holds, up to `limit`; returns whether it did.
    package func wait(
        upTo limit: Duration = .seconds(5),
        until condition: @Sendable ([HandoffNotice], Bool) -> Bool
    ) async -> Bool {
        await eventually(upTo: limit) { self.log.state.withLock { condition($0.notices, $0.finished) } }
    }
}

/// A label unique to one test run, so tests never see each other's handoffs (also on a shared broker).
package func uniqueLabel(_ name: String) -> HandoffLabel {
    // Force-try is fine here: the name is ASCII and short.
    try! HandoffLabel("test/\(name)/\(UUID().uuidString.prefix(8))")
}

/// An envelope with `data`, made by `origin`.
package func makeEnvelope(
    _ label: HandoffLabel,
    from origin: HandoffOrigin,
    data: String = "{}",
    vsn: Int = 1,
    createdAt: Date = Date(),
    id: HandoffID = .random()
) -> HandoffEnvelope {
    HandoffEnvelope(id: id, label: label, vsn: vsn, createdAt: createdAt, origin: origin, data: Data(data.utf8))
}
