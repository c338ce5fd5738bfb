import ArgumentParser
import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient

/// `handoff republish DIR`: the envelopes a `HandoffService` wrote to its fallback directory
/// (`<dir>/<label as topic level>/<id>.handoff`), each published again only if the broker does not hold it already.
struct RepublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "republish",
        abstract: "Publish the handoffs of a fallback directory that the broker does not hold (waiting or dead-lettered).",
        discussion: """
            Each file is checked first: its folder must be the canonical topic level of a label (PROTOCOL.md §3), its \
            name <id>.handoff, its content an envelope of that label and id that passes the checks of §4. A published \
            file is renamed to <id>.handoff.republished, so that running the command again does not publish it twice. \
            The broker cannot tell whether a successor merged the handoff already (after a budget-exceeded shutdown \
            it may have arrived after all): check before republishing. Exits 1 if any file was refused or failed.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The fallback directory (HandoffService.Configuration.fallbackDirectory).")
    var directory: String

    @Flag(help: "Check and report, publish nothing.")
    var dryRun = false

    @Option(
        help:
            "States larger than this many bytes are published in chunks plus a manifest (PROTOCOL.md §12), as the participants do; default: the library's 262144. Keep it under the broker's largest message."
    )
    var chunkSize: Int?

    func validate() throws {
        if let chunkSize, chunkSize < 1 { throw ValidationError("--chunk-size must be at least 1, not \(chunkSize)") }
    }

    func run() async throws {
        let files = try FallbackFile.scan(directory)
        guard !files.isEmpty else {
            say("no .handoff files in \(directory)")
            return
        }
        let (dryRun, timeout) = (self.dryRun, try connection.stepTimeout())
        // Published through a participant of the tool's own, which chunks a large state as any participant would.
        let publisher = dryRun ? nil : try await connection.participant(chunkSize: chunkSize)
        let failures: Int
        do {
            failures = try await republish(files, publisher: publisher, timeout: timeout)
        } catch {
            await publisher?.shutdown()
            throw error
        }
        await publisher?.shutdown()
        if failures > 0 { throw CLIError("\(failures) of \(files.count) files were not republished") }
    }

    private func republish(_ files: [FallbackFile], publisher: MQTTHandoffTransport?, timeout: Duration) async throws
        -> Int
    {
        try await BrokerSession.with(connection) { session -> Int in
            var failures = 0
            for file in files {
                guard case .success(let envelope) = file.envelope else {
                    if case .failure(let error) = file.envelope { say("refused    \(file.path): \(error)") }
                    failures += 1
                    continue
                }
                let subject = "'\(envelope.label)'/\(envelope.id)"
                let handoffTopic = session.topics.handoff(envelope.label, id: envelope.id.rawValue)
                let deadTopic = session.topics.deadLetter(envelope.label, id: envelope.id.rawValue)
                let held = try await session.retained([handoffTopic, deadTopic])
                if held.contains(where: { $0.topic == handoffTopic }) {
                    say("skipped    \(subject): already waiting on the broker (\(file.path))")
                    continue
                }
                if held.contains(where: { $0.topic == deadTopic }) {
                    say("skipped    \(subject): the broker holds it as a dead letter; see `handoff show` (\(file.path))")
                    continue
                }
                if dryRun {
                    say("would publish \(subject) from \(file.path)")
                    continue
                }
                do {
                    try await publisher?.initiate(asStored: try connection.signedForPublishing(envelope), timeout: timeout)
                } catch {
                    say("failed     \(subject): \(HandoffCommand.oneLine(error))")
                    failures += 1
                    continue
                }
                let done = file.path + ".republished"
                do {
                    try FileManager.default.moveItem(atPath: file.path, toPath: done)
                    say("published  \(subject) (vsn \(envelope.vsn), \(Format.size(file.payload.count))); file renamed to \(done)")
                } catch {
                    say(
                        "published  \(subject), but could not rename \(file.path): \(error.localizedDescription); do not republish it again"
                    )
                    failures += 1
                }
            }
            return failures
        }
    }
}

/// One `.handoff` file of a fallback directory, checked.
struct FallbackFile {
    var path: String
    var payload: Data
    var envelope: Result<HandoffEnvelope, CLIError>

    /// Every `<level>/<name>.handoff` under `directory`, sorted by path.
    static func scan(_ directory: String) throws -> [FallbackFile] {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIError("'\(directory)' is not a directory")
        }
        var files: [FallbackFile] = []
        for level in try manager.contentsOfDirectory(atPath: directory).sorted() {
            let folder = (directory as NSString).appendingPathComponent(level)
            guard manager.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            for name in try manager.contentsOfDirectory(atPath: folder).sorted() where name.hasSuffix(".handoff") {
                files.append(check(path: (folder as NSString).appendingPathComponent(name), level: level, name: name))
            }
        }
        return files
    }

    private static func check(path: String, level: String, name: String) -> FallbackFile {
        guard let payload = FileManager.default.contents(atPath: path) else {
            return FallbackFile(path: path, payload: Data(), envelope: .failure(CLIError("cannot read the file")))
        }
        func refuse(_ why: String) -> FallbackFile { FallbackFile(path: path, payload: payload, envelope: .failure(CLIError(why))) }
        let label: HandoffLabel
        do {
            label = try HandoffLabel(topicLevel: level)
        } catch {
            return refuse("the folder '\(level)' is not the canonical topic level of a label (PROTOCOL.md §3): \(error)")
        }
        let envelope: HandoffEnvelope
        do {
            envelope = try HandoffEnvelope.decode(payload)
        } catch {
            return refuse("not a readable envelope: \(error)")
        }
        let id = String(name.dropLast(".handoff".count))
        guard envelope.label == label, envelope.id.rawValue == id else {
            return refuse("the envelope names '\(envelope.label)'/\(envelope.id), but the file is '\(label)'/\(id)")
        }
        return FallbackFile(path: path, payload: payload, envelope: .success(envelope))
    }
}
