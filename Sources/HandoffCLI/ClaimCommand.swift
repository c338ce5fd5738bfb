import ArgumentParser
import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient

/// `handoff claim LABEL ID --to FILE`: takes one waiting handoff out by the claim rule of PROTOCOL.md §5, through
/// `MQTTHandoffTransport` itself (watch, pending, claim), so that it wins or loses exactly like any successor.
struct ClaimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "claim",
        abstract: "Claim a waiting handoff (exactly once, by the protocol's rule) and write it to a file.",
        discussion: """
            The file gets the envelope exactly as it was received (the format of a fallback file: `handoff republish` \
            can publish it again), or with --state-only the state's bytes. FILE must not exist. Exits 1 if another \
            participant wins the claim. If the file cannot be written after winning, the handoff is given back.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The label (the label itself, not its topic level).")
    var label: String

    @Argument(help: "The handoff id.")
    var id: String

    @Option(help: "Where to write it (must not exist).")
    var to: String

    @Flag(help: "Write only the state's bytes, not the whole envelope.")
    var stateOnly = false

    func run() async throws {
        let label = try parseLabel(label)
        guard let id = try? HandoffID(id) else { throw ValidationError("'\(id)' is not a handoff id (1–64 characters of A–Z a–z 0–9 _ -)") }
        guard !FileManager.default.fileExists(atPath: to) else { throw CLIError("'\(to)' exists already; not overwriting it") }
        // The file must be writable before anything is claimed: a won handoff has no other copy.
        guard FileManager.default.createFile(atPath: to, contents: nil) else { throw CLIError("cannot create '\(to)'") }
        do {
            try await claim(label, id)
        } catch {
            try? FileManager.default.removeItem(atPath: to)
            throw error
        }
    }

    private func claim(_ label: HandoffLabel, _ id: HandoffID) async throws {
        let timeout = try connection.stepTimeout()
        let transport = try await connection.participant()
        do {
            _ = try await transport.watch(label)
            guard let envelope = try await transport.pending(label).first(where: { $0.id == id }) else {
                throw CLIError(
                    "no handoff '\(label)'/\(id) waiting under prefix '\(try connection.topics().prefix)' (see `handoff list --label '\(label)'`)"
                )
            }
            guard try await transport.claim(envelope, timeout: timeout) else {
                throw CLIError(
                    "lost: another participant claimed '\(label)'/\(id) first (its claim is the round's verdict); nothing written")
            }
            // A chunked handoff (PROTOCOL.md §12) is written whole: the envelope its chunks make, read by the winner only.
            // The file gets the envelope as stored (signed and encrypted as its writer sealed it), or only the state.
            let (claimed, stored) =
                envelope.isChunkManifest ? try await assembled(envelope, transport, timeout: timeout) : (envelope, envelope.encoded())
            let bytes = stateOnly ? claimed.data : stored
            do {
                try bytes.write(to: URL(fileURLWithPath: to), options: .atomic)
            } catch {
                try await transport.release(envelope, timeout: timeout)
                throw CLIError(
                    "won '\(label)'/\(id) but could not write '\(to)' (\(error.localizedDescription)); gave it back: it is waiting again")
            }
            say(
                "claimed '\(label)'/\(id) (vsn \(claimed.vsn), \(claimed.data.count) bytes of \(claimed.contentType), from \(Format.origin(claimed.origin))); wrote \(bytes.count) bytes to \(to)"
            )
            if envelope.isChunkManifest {
                do {
                    try await transport.discardChunks(of: envelope, timeout: timeout)
                } catch {
                    warn(
                        "handoff: wrote '\(label)'/\(id), but could not remove its chunks (\(error)): they stay retained under \(try connection.topics().prefix)/chunks/"
                    )
                }
            }
        } catch {
            let settlement = await transport.shutdown()
            for envelope in settlement.deadLettered {
                warn(
                    "handoff: the claim of '\(envelope.label)'/\(envelope.id) had no verdict in time: moved to the dead letters (claim-outcome-unknown)"
                )
            }
            for envelope in settlement.unstored {
                warn("handoff: '\(envelope.label)'/\(envelope.id) could not be given back nor dead-lettered")
            }
            throw error
        }
        await transport.shutdown()
    }

    /// The envelope the chunks of a won manifest make, opened, and as stored. Chunks that are missing or damaged dead-letter the handoff as a whole,
    /// as any successor would (its manifest verbatim; the chunks stay for an operator); chunks that could not be read at
    /// all leave it waiting again (the transport gave it back).
    private func assembled(_ manifest: HandoffEnvelope, _ transport: MQTTHandoffTransport, timeout: Duration) async throws
        -> (envelope: HandoffEnvelope, stored: Data)
    {
        do {
            return try await transport.assembleWithStoredForm(manifest, timeout: timeout)
        } catch let error as HandoffError where error.code == .unreadableEnvelope {
            try await transport.deadLetter(manifest, reason: error.reason, detail: error.detail, timeout: timeout)
            throw CLIError(
                "won '\(manifest.label)'/\(manifest.id), but its chunks do not make its state (\(error.reason.rawValue): \(error.detail)); moved it to the dead letters, nothing written"
            )
        }
    }
}
