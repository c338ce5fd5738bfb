import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient

/// A chunked handoff as the tool reads it (docs/PROTOCOL.md §12): its manifest, the chunks the broker holds, and the
/// envelope they make when every one is there and intact.
struct ChunkedHandoff: Sendable {
    /// The manifest, or `nil` when the manifest envelope's data is not a readable one (see ``whole``).
    let manifest: ChunkManifest?
    /// How many chunk topics of the handoff hold a retained message.
    let storedChunks: Int
    /// The envelope the chunks make, or why they make none: `malformed` (the manifest), `chunk-missing`,
    /// `integrity-failure` (a chunk of the wrong length or hash), or the envelope's own checks of §4.
    let whole: Result<HandoffEnvelope, HandoffError>

    /// Reads the chunks of the manifest `envelope`, stored for `label` under id `id`, up to an ordering marker.
    static func read(_ session: BrokerSession, manifest envelope: HandoffEnvelope, label: HandoffLabel, id: String) async throws
        -> ChunkedHandoff
    {
        let chunks = try await session.retained([session.topics.chunkFilter(label, id: id)])
        let manifest: ChunkManifest
        do {
            manifest = try ChunkManifest.read(envelope.data)
        } catch {
            return ChunkedHandoff(manifest: nil, storedChunks: chunks.count, whole: .failure(error))
        }
        let assembly = ChunkAssembly(manifest: manifest, header: Array(manifest.header.utf8))
        for chunk in chunks {
            guard let slash = chunk.topic.lastIndex(of: "/") else { continue }
            assembly.receive(level: chunk.topic[chunk.topic.index(after: slash)...], payload: chunk.payload)
        }
        let whole = Result { () throws(HandoffError) -> HandoffEnvelope in
            // §4 (signature and encryption are the caller's, with --keys), then step 4 of §12.2.
            let whole = try HandoffEnvelope.decode(try assembly.finish())
            guard whole.label == label, whole.id.rawValue == id else {
                throw HandoffError.unreadableEnvelope(
                    .labelMismatch, detail: "the envelope the chunks make names '\(whole.label)'/\(whole.id)")
            }
            try manifest.check(whole, madeFor: envelope)
            return whole
        }
        return ChunkedHandoff(manifest: manifest, storedChunks: chunks.count, whole: whole)
    }

    /// Removes every retained chunk of `label`/`id` (a zero-length retained publish on each), whatever the manifest says;
    /// returns how many there were.
    static func removeChunks(_ session: BrokerSession, label: HandoffLabel, id: String) async throws -> Int {
        let chunks = try await session.retained([session.topics.chunkFilter(label, id: id)])
        for chunk in chunks { try await session.publishRetained(chunk.topic, payload: Data()) }
        return chunks.count
    }
}
