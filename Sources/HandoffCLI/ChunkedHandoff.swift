import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient

/// A chunked handoff as the tool reads it (docs/PROTOCOL.md §12): its manifest, the chunks the broker holds, and the
/// envelope they make when every one is there and intact.
struct ChunkedHandoff: Sendable {
    /// The manifest, or `nil` when the manifest envelope's data is not a readable one (see ``whole``).
    let manifest: ChunkManifest?
    /// The chunk topics of the handoff that hold a retained message.
    let storedChunkTopics: [String]
    /// The envelope the chunks make, or why they make none: `malformed` (the manifest), `chunk-missing`,
    /// `integrity-failure` (a chunk of the wrong length or hash), or the envelope's own checks of §4.
    let whole: Result<HandoffEnvelope, HandoffError>

    /// Reads the chunks of the manifest `envelope`, stored for `label` under id `id`, up to an ordering marker.
    static func read(_ session: BrokerSession, manifest envelope: HandoffEnvelope, label: HandoffLabel, id: String) async throws
        -> ChunkedHandoff
    {
        let chunks = try await session.retained([session.topics.chunkFilter(label, id: id)])
        let topics = chunks.map(\.topic).sorted()
        let manifest: ChunkManifest
        do {
            manifest = try ChunkManifest.read(envelope.data)
        } catch {
            return ChunkedHandoff(manifest: nil, storedChunkTopics: topics, whole: .failure(error))
        }
        let assembly = ChunkAssembly(manifest: manifest, header: Array(manifest.header.utf8))
        for chunk in chunks {
            guard let slash = chunk.topic.lastIndex(of: "/") else { continue }
            assembly.receive(level: chunk.topic[chunk.topic.index(after: slash)...], payload: chunk.payload)
        }
        let whole = Result { () throws(HandoffError) -> HandoffEnvelope in
            let payload = try assembly.finish()
            let whole = try HandoffEnvelope.decode(payload)
            guard !whole.isChunkManifest, whole.label == label, whole.id.rawValue == id, whole.vsn == envelope.vsn,
                whole.origin == envelope.origin, whole.createdAt == envelope.createdAt
            else {
                throw HandoffError.unreadableEnvelope(
                    .malformed,
                    detail:
                        "the envelope the chunks make disagrees with its manifest (label, id, vsn, origin or createdAt), or is a manifest itself"
                )
            }
            return whole
        }
        return ChunkedHandoff(manifest: manifest, storedChunkTopics: topics, whole: whole)
    }

    /// Removes every retained chunk of `label`/`id` (a zero-length retained publish on each), whatever the manifest says;
    /// returns how many there were.
    static func removeChunks(_ session: BrokerSession, label: HandoffLabel, id: String) async throws -> Int {
        let chunks = try await session.retained([session.topics.chunkFilter(label, id: id)])
        for chunk in chunks { try await session.publishRetained(chunk.topic, payload: Data()) }
        return chunks.count
    }
}
