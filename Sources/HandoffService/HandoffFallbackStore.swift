import Foundation
import Handoff

/// Writes the envelopes of handoffs that were not acknowledged at shutdown to a directory, so that no state at
/// risk is only in a log line.
///
/// Layout: `<directory>/<label as a topic level>/<handoff id>.handoff`, each file holding the envelope exactly as
/// it would have been published (docs/PROTOCOL.md §4). The label's topic level is the same percent-encoding the
/// MQTT topics use, so a file maps to its topic: an operator republishes the directory with the `handoff` CLI,
///
/// ```
/// handoff republish <directory>
/// ```
///
/// which publishes each file only if the broker does not hold it already (waiting or dead-lettered). Check first
/// that no successor merged it: after a
/// ``HandoffShutdownOutcome/Kind/budgetExceeded`` the publish may have reached the broker after all, and
/// republishing a handoff that was merged would merge it twice. That is why nothing republishes these files
/// automatically.
public struct HandoffFallbackStore: Sendable {
    /// The directory the envelopes are written to.
    public let directory: URL

    /// A store writing into `directory` (created when needed).
    public init(directory: URL) {
        self.directory = directory
    }

    /// The file an envelope is written to.
    public func file(for envelope: HandoffEnvelope) -> URL {
        directory
            .appendingPathComponent(envelope.label.topicLevel, isDirectory: true)
            .appendingPathComponent("\(envelope.id.rawValue).handoff", isDirectory: false)
    }

    /// Writes `envelope` atomically and returns the file's path.
    public func save(_ envelope: HandoffEnvelope) throws -> String {
        let file = file(for: envelope)
        try FileManager.default.createDirectory(
            at: file.deletingLastPathComponent(),
            withIntermediateDirectories: true
        )
        try envelope.encoded().write(to: file, options: .atomic)
        return file.path
    }

    /// Reads back every envelope in the store (for operators' tools and tests), in no particular order.
    /// Files that are not envelopes are skipped.
    public func envelopes() throws -> [HandoffEnvelope] {
        let manager = FileManager.default
        guard manager.fileExists(atPath: directory.path) else { return [] }
        var result: [HandoffEnvelope] = []
        for level in try manager.contentsOfDirectory(atPath: directory.path) {
            let folder = directory.appendingPathComponent(level, isDirectory: true)
            guard let files = try? manager.contentsOfDirectory(atPath: folder.path) else { continue }
            for name in files where name.hasSuffix(".handoff") {
                let data = try Data(contentsOf: folder.appendingPathComponent(name))
                if let envelope = try? HandoffEnvelope.decode(data) {
                    result.append(envelope)
                }
            }
        }
        return result
    }
}
