import Foundation
import Handoff
import MosquittoClient
import Synchronization

/// The data of a chunk manifest (docs/PROTOCOL.md §12): the header of the envelope the chunks make, the chunk size, the
/// whole data's length and each chunk's SHA-256.
///
/// ```
/// {"chunkSize":262144,"chunks":["<sha256 of chunk 0>",…],"format":"swift-handoff-chunks/1","header":"<envelope header>","length":16777216}
/// ```
package struct ChunkManifest: Codable, Sendable, Equatable {
    package static let format = "swift-handoff-chunks/1"

    package var chunkSize: Int
    package var chunks: [String]
    package var format: String
    /// The header line (§4) of the envelope whose data the chunks are, as a JSON string.
    package var header: String
    /// The number of bytes of that data: the chunks' total.
    package var length: Int

    package var count: Int { chunks.count }

    /// The number of bytes of chunk `index`.
    package func length(ofChunk index: Int) -> Int {
        index < count - 1 ? chunkSize : length - chunkSize * (count - 1)
    }

    /// Compact JSON, keys sorted, `/` not escaped.
    func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding strings, integers and an array of strings cannot fail.
        return (try? encoder.encode(self)) ?? Data()
    }

    /// Reads the data of a manifest envelope, with the checks of docs/PROTOCOL.md §12 "Reading a manifest".
    package static func read(_ data: Data) throws(HandoffError) -> ChunkManifest {
        func malformed(_ detail: String) -> HandoffError {
            HandoffError.unreadableEnvelope(.malformed, detail: "chunk manifest: \(detail)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data), let fields = object as? [String: Any] else {
            throw malformed("its data is not a JSON object")
        }
        guard let format = fields["format"] as? String else { throw malformed("no 'format' string") }
        guard format == Self.format else {
            throw HandoffError.unreadableEnvelope(
                .unsupportedFormat, detail: "chunk manifest of format '\(format)'; this reader reads '\(Self.format)'"
            )
        }
        let manifest: ChunkManifest
        do {
            manifest = try JSONDecoder().decode(ChunkManifest.self, from: data)
        } catch {
            throw malformed("\(error)")
        }
        guard manifest.chunkSize >= 1 else { throw malformed("'chunkSize' is \(manifest.chunkSize), not a positive integer") }
        guard manifest.length >= 1 else { throw malformed("'length' is \(manifest.length), not a positive integer") }
        let expected = (manifest.length - 1) / manifest.chunkSize + 1
        guard manifest.count == expected else {
            throw malformed(
                "\(manifest.count) chunk hashes for \(manifest.length) bytes in chunks of \(manifest.chunkSize) (\(expected) chunks)")
        }
        guard manifest.chunks.allSatisfy(Self.isDigest) else { throw malformed("a chunk hash is not 64 hexadecimal digits") }
        let header = manifest.header.utf8
        guard header.count <= HandoffEnvelope.maximumHeaderSize, !header.contains(0x0A) else {
            throw malformed("'header' is longer than \(HandoffEnvelope.maximumHeaderSize) bytes or holds a line feed")
        }
        return manifest
    }

    /// Step 4 of docs/PROTOCOL.md §12.2 once the envelope the chunks make was read (§4 checked its label and id against
    /// the topic): it is not a manifest itself, and its `vsn`, `origin` and `createdAt` are those of `manifest`, the
    /// envelope that carried this manifest; else `malformed`.
    package func check(_ whole: HandoffEnvelope, madeFor manifest: HandoffEnvelope) throws(HandoffError) {
        guard !whole.isChunkManifest, whole.vsn == manifest.vsn, whole.origin == manifest.origin, whole.createdAt == manifest.createdAt
        else {
            throw HandoffError.unreadableEnvelope(
                .malformed,
                detail: "the envelope the chunks make disagrees with its manifest (vsn, origin or createdAt), or is a manifest itself"
            )
        }
    }

    private static func isDigest(_ text: String) -> Bool {
        text.utf8.count == 64
            && text.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
            }
    }
}

extension HandoffTopics {
    /// `{prefix}/chunks/{label}/{id}/`: the start of the chunk topics of one handoff (docs/PROTOCOL.md §12).
    func chunkTopicPrefix(_ label: HandoffLabel, id: String) -> String { "\(prefix)/chunks/\(label.topicLevel)/\(id)/" }
    /// `{prefix}/chunks/{label}/{id}/{index}`.
    public func chunk(_ label: HandoffLabel, id: String, index: Int) -> String { chunkTopicPrefix(label, id: id) + String(index) }
    /// `{prefix}/chunks/{label}/{id}/+`.
    public func chunkFilter(_ label: HandoffLabel, id: String) -> String { chunkTopicPrefix(label, id: id) + "+" }
}

/// One chunked handoff being read by the claim's winner: the chunks go straight into one buffer allocated for the whole
/// envelope (its header, 0x0A, the data), each checked against its hash as it arrives, on libmosquitto's network thread.
package final class ChunkAssembly: Sendable {
    private struct State {
        var buffer: Data
        var received: [Bool]
        /// Chunks that arrived with the wrong length or hash, and why.
        var corrupt: [Int: String] = [:]
    }

    package let manifest: ChunkManifest
    private let dataOffset: Int
    private let state: Mutex<State>

    /// - Parameter header: the bytes of the manifest's `header`.
    package init(manifest: ChunkManifest, header: [UInt8]) {
        self.manifest = manifest
        dataOffset = header.count + 1
        var buffer = Data(count: header.count + 1 + manifest.length)
        buffer.replaceSubrange(0..<header.count, with: header)
        buffer[header.count] = 0x0A
        state = Mutex(State(buffer: buffer, received: Array(repeating: false, count: manifest.count)))
    }

    /// A message on one of the handoff's chunk topics; `level` is its last topic level.
    package func receive(level: Substring, payload: Data) {
        // Only canonical indices of this manifest: anything else on the chunk topics is not one of its chunks.
        guard !payload.isEmpty, let index = Int(level), index >= 0, index < manifest.count, String(index) == level else { return }
        let expected = manifest.length(ofChunk: index)
        guard payload.count == expected else {
            state.withLock { $0.corrupt[index] = "chunk \(index) has \(payload.count) bytes, the manifest says \(expected)" }
            return
        }
        let digest = HandoffEnvelope.sha256Hex(payload)
        guard digest == manifest.chunks[index].lowercased() else {
            state.withLock { $0.corrupt[index] = "SHA-256 of chunk \(index) is \(digest), the manifest says \(manifest.chunks[index])" }
            return
        }
        let offset = dataOffset + index * manifest.chunkSize
        state.withLock { state in
            state.buffer.withUnsafeMutableBytes { buffer in
                payload.withUnsafeBytes { chunk in
                    buffer.baseAddress!.advanced(by: offset).copyMemory(from: chunk.baseAddress!, byteCount: chunk.count)
                }
            }
            state.received[index] = true
            state.corrupt[index] = nil
        }
    }

    /// The whole envelope, once every chunk arrived intact; else why not: `integrity-failure` for a chunk of the wrong
    /// length or hash, `chunk-missing` for one that is not there.
    package func finish() throws(HandoffError) -> Data {
        let (buffer, received, corrupt) = state.withLock { state in
            defer { state.buffer = Data() }
            return (state.buffer, state.received, state.corrupt)
        }
        if let first = corrupt.keys.min(), let detail = corrupt[first] {
            throw HandoffError.unreadableEnvelope(
                .integrityFailure, detail: corrupt.count == 1 ? detail : "\(detail) (and \(corrupt.count - 1) more)")
        }
        let missing = received.indices.filter { !received[$0] }
        guard missing.isEmpty else {
            let listed = missing.prefix(10).map(String.init).joined(separator: ", ") + (missing.count > 10 ? ", …" : "")
            throw HandoffError.unreadableEnvelope(
                .chunkMissing, detail: "\(missing.count) of the \(manifest.count) chunks are not on the broker (chunk \(listed))"
            )
        }
        return buffer
    }
}

/// The chunked handoffs this participant reads (by chunk topic prefix), and the ones it assembled whose chunks it removes
/// once they are merged.
final class ChunkReaders: Sendable {
    private struct State {
        var reading: [String: ChunkAssembly] = [:]
        /// By `{label level}/{id}`: the chunk topic prefix and the number of chunks.
        var assembled: [String: (topicPrefix: String, count: Int)] = [:]
    }

    private let state = Mutex(State())

    /// Takes a message on a chunk topic of a handoff being read; `false` for every other message.
    func route(_ message: MQTTMessage) -> Bool {
        let topic = message.topic
        // Most of the time nothing is being read: every other message passes on without more work.
        let found = state.withLock { state -> (ChunkAssembly, String.Index)? in
            guard !state.reading.isEmpty, let slash = topic.lastIndex(of: "/"), let assembly = state.reading[String(topic[...slash])] else {
                return nil
            }
            return (assembly, slash)
        }
        guard let (assembly, slash) = found else { return false }
        assembly.receive(level: topic[topic.index(after: slash)...], payload: message.payload)
        return true
    }

    func startReading(_ topicPrefix: String, _ assembly: ChunkAssembly) {
        state.withLock { $0.reading[topicPrefix] = assembly }
    }

    func stopReading(_ topicPrefix: String) {
        _ = state.withLock { $0.reading.removeValue(forKey: topicPrefix) }
    }

    static func key(_ envelope: HandoffEnvelope) -> String { "\(envelope.label.topicLevel)/\(envelope.id.rawValue)" }

    func markAssembled(_ envelope: HandoffEnvelope, topicPrefix: String, count: Int) {
        state.withLock { $0.assembled[Self.key(envelope)] = (topicPrefix, count) }
    }

    /// The chunks of an assembled handoff, taken out of the table (they are removed once, by one caller).
    func takeAssembled(_ envelope: HandoffEnvelope) -> (topicPrefix: String, count: Int)? {
        state.withLock { $0.assembled.removeValue(forKey: Self.key(envelope)) }
    }

    /// An assembled handoff given back or dead-lettered: its chunks stay (they belong to the manifest stored again).
    func forgetAssembled(_ envelope: HandoffEnvelope) {
        _ = takeAssembled(envelope)
    }
}
