import ArgumentParser
import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient

/// A topic level given on the command line (an id, or a checkpoint's instance): one level, no wildcard.
func parseLevel(_ text: String, what: String = "ID") throws -> String {
    guard !text.isEmpty, text.utf8.count <= 256, !text.contains(where: { $0 == "/" || $0 == "+" || $0 == "#" || $0 == "\u{0}" }) else {
        throw ValidationError("\(what) '\(text)' is not a topic level (it must be non-empty, without '/', '+', '#')")
    }
    return text
}

/// `handoff dead-letters`: the dead letters with their reasons (PROTOCOL.md §7).
struct DeadLettersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract: "List the dead letters with their reasons, details, who rejected them and when."
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Only this label (the label itself, not its topic level).")
    var label: String?

    @Flag(help: "A JSON array, for scripts.")
    var json = false

    func run() async throws {
        let label = try label.map(parseLabel)
        let snapshot = try await BrokerSession.with(connection) { try await Snapshot.read($0, label: label, kinds: [.deadLetter]) }
        for problem in snapshot.problems { warn("handoff: warning: \(problem.topic): \(problem.problem)") }
        let letters = snapshot.items(.deadLetter)
        let now = Date()
        if json { return try printJSON(letters.map { ItemJSON($0, now: now) }) }
        say("DEAD LETTERS (\(letters.count))")
        for item in letters {
            let info = item.deadLetter
            say(
                "  \(item.label)/\(item.key)  \(info?.reason ?? "-")  \(Format.size(item.size))  rejected by \(info?.rejectedBy ?? "-") at \(info?.rejectedAt ?? "-")"
            )
            if let detail = info?.detail, !detail.isEmpty { say("    \(detail)") }
            if let envelope = item.envelope {
                say(
                    "    vsn \(envelope.vsn), made \(Format.age(since: envelope.createdAt, now: now)) ago by \(Format.origin(envelope.origin))"
                )
            } else if let problem = item.problem {
                say("    payload unreadable: \(problem)")
            }
        }
    }
}

/// `handoff requeue LABEL ID`: a dead letter back to the waiting handoffs, as a new round.
struct RequeueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "requeue",
        abstract: "Publish a dead letter's payload again as a waiting handoff (a new round), then remove the dead letter.",
        discussion: """
            Refused when the payload is not a readable envelope of LABEL (it would only be dead-lettered again) or when \
            a handoff with its id is waiting already. The handoff topic is the one its header names (for a checkpoint's \
            dead letter: the checkpoint's id).
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The label (the label itself, not its topic level).")
    var label: String

    @Argument(help: "The dead letter's id (the last level of its topic).")
    var id: String

    func run() async throws {
        let label = try parseLabel(label)
        let id = try parseLevel(id)
        try await BrokerSession.with(connection) { session in
            let deadTopic = session.topics.deadLetter(label, id: id)
            guard let message = try await session.retained(at: deadTopic) else {
                throw CLIError("no dead letter '\(label)'/\(id) (topic \(deadTopic)); see `handoff dead-letters --label '\(label)'`")
            }
            let envelope: HandoffEnvelope
            do {
                envelope = try HandoffEnvelope.decode(message.payload)
            } catch {
                throw CLIError(
                    "the dead letter '\(label)'/\(id) is not a readable envelope (\(error)); requeueing it would only dead-letter it again")
            }
            guard envelope.label == label else {
                throw CLIError(
                    "the dead letter's envelope names label '\(envelope.label)', not '\(label)'; requeueing it would only dead-letter it again"
                )
            }
            let handoffTopic = session.topics.handoff(label, id: envelope.id.rawValue)
            if try await session.retained(at: handoffTopic) != nil {
                throw CLIError("a handoff '\(label)'/\(envelope.id) is waiting already (topic \(handoffTopic)); not requeued")
            }
            let payload = try connection.signedForPublishing(envelope).encoded()
            try await connection.storeInArbiter(envelope, payload: payload, prefix: session.topics.prefix)
            try await session.publishRetained(
                handoffTopic, payload: payload, properties: MQTTPublishProperties(contentType: HandoffProperty.contentType))
            // Only once the handoff is stored is the dead letter removed: nothing is lost in between.
            try await session.publishRetained(deadTopic, payload: Data())
            say(
                "requeued '\(label)'/\(envelope.id): waiting on \(handoffTopic) (vsn \(envelope.vsn), \(Format.size(message.payload.count))); dead letter removed"
            )
        }
    }
}

/// `handoff purge LABEL ID | LABEL --all | --all`: deletes dead letters, after a confirmation.
struct PurgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge",
        abstract: "Delete dead letters: one (LABEL ID), all of a label (LABEL --all) or all (--all). Asks first unless --yes."
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The label (the label itself, not its topic level).")
    var label: String?

    @Argument(help: "The dead letter's id.")
    var id: String?

    @Flag(help: "Every dead letter of LABEL, or of every label when no LABEL is given.")
    var all = false

    @Flag(name: .shortAndLong, help: "Do not ask for a confirmation.")
    var yes = false

    func validate() throws {
        if all, id != nil { throw ValidationError("give either an ID or --all, not both") }
        if !all, label == nil || id == nil { throw ValidationError("give LABEL and ID, or --all (with or without a LABEL)") }
    }

    func run() async throws {
        let label = try label.map(parseLabel)
        let id = try id.map { try parseLevel($0) }
        let (yes, all) = (self.yes, self.all)
        try await BrokerSession.with(connection) { session in
            let letters = try await Snapshot.read(session, label: label, kinds: [.deadLetter]).items(.deadLetter)
            let chosen = all ? letters : letters.filter { $0.key == id }
            guard !chosen.isEmpty else {
                if all {
                    say("no dead letters\(label.map { " for '\($0)'" } ?? "")")
                    return
                }
                throw CLIError("no dead letter '\(label?.rawValue ?? "")'/\(id ?? "") under prefix '\(session.topics.prefix)'")
            }
            if !yes {
                let what =
                    chosen.count == 1
                    ? "the dead letter '\(chosen[0].label)'/\(chosen[0].key) (\(chosen[0].deadLetter?.reason ?? "-"))"
                    : "\(chosen.count) dead letters"
                FileHandle.standardError.write(Data("Delete \(what) for good? [y/N] ".utf8))
                let answer = readLine()?.trimmingCharacters(in: .whitespaces).lowercased()
                // Typed answers end the prompt's line themselves; piped ones do not.
                if isatty(STDIN_FILENO) == 0 { warn("") }
                guard answer == "y" || answer == "yes" else { throw CLIError("not confirmed: nothing deleted (--yes skips the question)") }
            }
            for item in chosen {
                try await session.publishRetained(item.topic, payload: Data())
                // A chunked handoff's dead letter is its manifest; its chunks go with it (PROTOCOL.md §12).
                let chunks =
                    item.envelope?.isChunkManifest == true
                    ? try await ChunkedHandoff.removeChunks(session, label: item.label, id: item.key) : 0
                say(
                    "purged '\(item.label)'/\(item.key) (\(item.deadLetter?.reason ?? "-"), \(Format.size(item.size))\(chunks > 0 ? ", and its \(chunks) chunks" : ""))"
                )
            }
        }
    }
}
