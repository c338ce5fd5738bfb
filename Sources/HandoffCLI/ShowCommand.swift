import ArgumentParser
import Foundation
import Handoff
import HandoffMQTT

/// `handoff show LABEL ID`: one stored message, its header and state, verified.
struct ShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a waiting handoff, a checkpoint (ID: its instance) or a dead letter: header, state (when JSON), integrity.",
        discussion: "Exits 1 when nothing is stored under LABEL and ID, or when what is stored fails the checks of docs/PROTOCOL.md §4."
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The label (the label itself, not its topic level).")
    var label: String

    @Argument(help: "The handoff id (of a handoff or a dead letter), or the instance of a checkpoint.")
    var id: String

    func run() async throws {
        let label = try parseLabel(label)
        let id = self.id
        let keys = try connection.keySet()
        let found = try await BrokerSession.with(connection) { session -> [(StoredItem, ChunkedHandoff?)] in
            let topics = session.topics
            let candidates: [(HandoffTopics.Kind, String)] = [
                (.handoff, topics.handoff(label, id: id)), (.checkpoint, topics.checkpoint(label, instance: id)),
                (.deadLetter, topics.deadLetter(label, id: id)),
            ]
            let snapshot = try await Snapshot.read(session, label: label)
            var found: [(StoredItem, ChunkedHandoff?)] = []
            for (kind, topic) in candidates {
                guard let item = snapshot.items.first(where: { $0.kind == kind && $0.topic == topic }) else { continue }
                // A chunked handoff (PROTOCOL.md §12) is shown whole, once its chunks are read and checked.
                // An encrypted manifest is read once --keys opened it (its signature is reported below).
                guard let stored = item.envelope, stored.isChunkManifest, item.problem == nil,
                    let manifest = keys.map({ try? $0.open(stored) }) ?? stored, manifest.encryption == nil
                else {
                    found.append((item, nil))
                    continue
                }
                found.append((item, try await ChunkedHandoff.read(session, manifest: manifest, label: label, id: id)))
            }
            return found
        }
        guard !found.isEmpty else {
            throw CLIError(
                "nothing stored for '\(label)'/\(id) under prefix '\(try connection.topics().prefix)': no waiting handoff, checkpoint or dead letter (see `handoff list --label '\(label)'`)"
            )
        }
        var failures: [String] = []
        for (index, (item, chunked)) in found.enumerated() {
            if index > 0 { say() }
            let signatureProblem = show(item, chunked: chunked, keys: keys)
            if let problem = item.problem ?? signatureProblem { failures.append("\(item.kind.rawValue) \(item.topic): \(problem)") }
        }
        if !failures.isEmpty { throw CLIError(failures.joined(separator: "; ")) }
    }

    /// Prints `item` (with `chunked`, the chunks of a manifest); returns why its chunks fail the checks of PROTOCOL.md §12, or
    /// its signature or encryption the keys of `--keys` (§10.4), if they do.
    private func show(_ item: StoredItem, chunked: ChunkedHandoff?, keys: HandoffKeySet?) -> String? {
        say("\(item.kind.rawValue) \(item.topic)")
        say("  size        \(item.size) bytes")
        if let letter = item.deadLetter {
            say("  reason      \(letter.reason)")
            if !letter.detail.isEmpty { say("  detail      \(letter.detail)") }
            say("  rejected by \(letter.rejectedBy.isEmpty ? "-" : letter.rejectedBy) at \(letter.rejectedAt ?? "-")")
            if let from = letter.fromTopic { say("  from        \(from)") }
        }
        if let release = item.release {
            say("  status      \(Listing.status(item)), instance released through incarnation \(release.releasedThrough)")
        }
        // The header: the bytes before the first newline, pretty-printed when they are JSON.
        let payload = item.payload
        let headerEnd = payload.prefix(HandoffEnvelope.maximumHeaderSize + 1).firstIndex(of: 0x0A)
        if let headerEnd {
            let header = payload[payload.startIndex..<headerEnd]
            say("header:")
            say(indent(Format.prettyJSON(header) ?? String(decoding: header, as: UTF8.self)))
        } else {
            say("header:     (none: no newline within the first \(HandoffEnvelope.maximumHeaderSize + 1) bytes)")
        }
        guard let stored = item.envelope, item.problem == nil else {
            say("integrity:  FAILED: \(item.problem ?? "unreadable")")
            return nil
        }
        say("integrity:  verified (sha256 \(stored.sha256) of \(stored.data.count) bytes)")
        var envelope = stored
        if let chunked {
            let count =
                chunked.manifest.map { "\(chunked.storedChunks) of \($0.count) chunks" }
                ?? "\(chunked.storedChunks) chunks"
            let sizes = chunked.manifest.map { ", \($0.length) bytes in chunks of \($0.chunkSize)" } ?? ""
            say("chunks:     \(count) on the broker\(sizes)")
            switch chunked.whole {
            case .failure(let error):
                say("chunks:     FAILED: \(error.reason.rawValue): \(error.detail)")
                return "\(error.reason.rawValue): \(error.detail)"
            case .success(let whole):
                // The manifest is signed on its own (§12: a signed manifest covers every chunk). With --keys, its chunks
                // were read only once it verified (`run()`); one that does not is shown as any envelope, below.
                if keys != nil { say("manifest:   signature verified (key \(stored.signature?.member?.key ?? "?"))") }
                say("chunks:     verified (sha256 \(whole.sha256) of the \(whole.data.count) bytes they make); the envelope they make:")
                if let header = chunked.manifest?.header {
                    say(indent(Format.prettyJSON(Data(header.utf8)) ?? header))
                }
                envelope = whole
            }
        }
        if let keys {
            do {
                envelope = try keys.open(envelope)
                say("signature:  verified (key \(envelope.signature?.member?.key ?? "?"))")
            } catch {
                say("signature:  FAILED: \(error)")
                return "\(error)"
            }
        } else if let signature = envelope.signature?.member {
            say("signature:  present (key \(signature.key)), not verified: pass --keys")
        }
        if let encryption = envelope.encryption?.member {
            say("state:      encrypted with key \(encryption.key) (\(envelope.data.count) bytes): pass --keys to decrypt")
            return nil
        }
        if Format.isJSON(envelope.contentType), let pretty = Format.prettyJSON(envelope.data) {
            say("state (\(envelope.contentType), vsn \(envelope.vsn)):")
            say(indent(pretty))
        } else {
            say("state:      \(envelope.data.count) bytes of \(envelope.contentType), not shown (`handoff claim` writes them to a file)")
        }
        return nil
    }

    private func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n")
    }
}
