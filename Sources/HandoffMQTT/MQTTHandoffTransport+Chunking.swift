import Foundation
import Handoff
import MosquittoClient

/// Chunked handoffs (docs/PROTOCOL.md §12): a state whose stored data is longer than ``MQTTHandoffTransport/Options/chunkSize``
/// is published as retained chunks, acknowledged before its manifest, which is the handoff that waits and is claimed by
/// the rule of §5. The winner reads the chunks, checks them, and removes them once the state is merged.
extension MQTTHandoffTransport: HandoffChunking {
    /// How many chunks are published at once (each in flight costs libmosquitto two copies of it).
    static let chunkWindow = 8

    public func willChunk(_ envelope: HandoffEnvelope) -> Bool {
        let sealing = router.options.keys?.encrypts == true ? 16 : 0
        return envelope.incarnation == nil && envelope.data.count + sealing > router.options.chunkSize
    }

    /// The payload published on the handoff topic by ``initiate(_:timeout:)``: the envelope (with `sealing`, signed and
    /// encrypted when keyed) or, when its data is longer than the chunk size, its manifest (sealed when keyed), once its
    /// chunks are stored.
    func outgoingPayload(of envelope: HandoffEnvelope, sealing: Bool, timeout: Duration) async throws -> Data {
        let keys = router.options.keys
        var sealed = sealing ? try keys.map { try $0.seal(envelope) } ?? envelope : envelope
        let chunkSize = router.options.chunkSize
        guard sealed.incarnation == nil, sealed.data.count > chunkSize else { return sealed.encoded() }
        // The whole data's SHA-256 (the header's `sha256`) is computed while the chunks are being stored, not before.
        let data = sealed.data
        let digest = sealed.digest == nil ? Task { HandoffEnvelope.sha256Hex(data) } : nil
        let hashes: [String]
        do {
            hashes = try await publishChunks(of: sealed, chunkSize: chunkSize, timeout: timeout)
        } catch {
            digest?.cancel()
            throw error
        }
        if let digest { sealed.digest = await digest.value }
        let header = sealed.encodedHeader()
        let manifest = ChunkManifest(
            chunkSize: chunkSize, chunks: hashes, format: ChunkManifest.format, header: String(decoding: header, as: UTF8.self),
            length: sealed.data.count
        )
        let outer = HandoffEnvelope(
            id: sealed.id, label: sealed.label, vsn: sealed.vsn, createdAt: sealed.createdAt, origin: sealed.origin,
            contentType: HandoffEnvelope.chunkManifestContentType, data: manifest.encoded()
        )
        logger.debug(
            "Chunks of a large handoff stored; publishing its manifest",
            metadata: [
                "handoff.label": "\(envelope.label)", "handoff.id": "\(envelope.id)", "handoff.bytes": "\(sealed.data.count)",
                "handoff.chunks": "\(hashes.count)",
            ]
        )
        return try (keys.map { try $0.seal(outer) } ?? outer).encoded()
    }

    /// Publishes the chunks of `envelope`'s data, retained, QoS 1, a few at a time, each hashed as it goes; returns their
    /// hashes once the broker acknowledged every one.
    private func publishChunks(of envelope: HandoffEnvelope, chunkSize: Int, timeout: Duration) async throws -> [String] {
        let (client, topics, data) = (self.client, self.topics, envelope.data)
        let (label, id) = (envelope.label, envelope.id.rawValue)
        let count = (data.count - 1) / chunkSize + 1
        let properties = MQTTPublishProperties(messageExpiry: router.options.handoffExpiry)
        let window = Self.chunkWindow
        do {
            return try await withDeadline(timeout, operation: "store the \(count) chunks of handoff '\(label)'/\(id)") {
                try await withThrowingTaskGroup(of: (Int, String).self) { group in
                    var hashes = [String](repeating: "", count: count)
                    var next = 0
                    // Publishes chunk `next` (a slice of the data, no copy) in a child task that returns its SHA-256.
                    func sendNext() {
                        let index = next
                        let start = data.startIndex + index * chunkSize
                        let slice = data[start..<min(start + chunkSize, data.endIndex)]
                        group.addTask {
                            let digest = HandoffEnvelope.sha256Hex(slice)
                            try await client.publish(
                                topics.chunk(label, id: id, index: index), payload: slice, qos: .atLeastOnce, retain: true,
                                properties: properties)
                            return (index, digest)
                        }
                        next += 1
                    }
                    while next < min(window, count) { sendNext() }
                    while let (index, digest) = try await group.next() {
                        hashes[index] = digest
                        if next < count { sendNext() }
                    }
                    return hashes
                }
            }
        } catch let error as MQTTError {
            throw HandoffError.transportUnavailable("Could not store the chunks of handoff '\(label)'/\(id): \(error)", underlying: error)
        }
    }

    public func checkManifest(_ manifest: HandoffEnvelope) throws(HandoffError) {
        _ = try ChunkManifest.read(manifest.data)
    }

    public func assemble(_ manifest: HandoffEnvelope, timeout: Duration) async throws -> HandoffEnvelope {
        try await assembleWithStoredForm(manifest, timeout: timeout).envelope
    }

    /// ``assemble(_:timeout:)``, and the envelope the chunks make as stored (signed and encrypted as its writer sealed it;
    /// `handoff claim` writes it to a file). Without encryption its data is the same buffer as the envelope's.
    package func assembleWithStoredForm(_ manifest: HandoffEnvelope, timeout: Duration) async throws -> (
        envelope: HandoffEnvelope, stored: Data
    ) {
        let parsed = try ChunkManifest.read(manifest.data)
        guard parsed.length <= router.options.maximumPayloadSize else {
            throw HandoffError.unreadableEnvelope(
                .tooLarge, detail: "the chunks hold \(parsed.length) bytes, more than the maximum of \(router.options.maximumPayloadSize)"
            )
        }
        let (label, id) = (manifest.label, manifest.id.rawValue)
        let topicPrefix = topics.chunkTopicPrefix(label, id: id)
        let assembly = ChunkAssembly(manifest: parsed, header: Array(parsed.header.utf8))
        let (client, router) = (self.client, self.router)
        chunkReaders.startReading(topicPrefix, assembly)
        do {
            // The retained chunks come after the SUBACK, the ordering marker after them (docs/PROTOCOL.md §6).
            try await withDeadline(timeout, operation: "read the chunks of handoff '\(label)'/\(id)") {
                try await client.subscribe(topicPrefix + "+", options: MQTTSubscribeOptions(qos: .atLeastOnce))
                try await router.sync(timeout: timeout)
            }
        } catch {
            chunkReaders.stopReading(topicPrefix)
            try? await client.unsubscribe(topicPrefix + "+")
            // Won, not readable now: it goes back to the waiting handoffs as received, its chunks untouched.
            do {
                try await release(manifest, timeout: timeout)
            } catch let returnError {
                logger.error(
                    "Won a chunked handoff whose chunks could not be read, and could not give it back: only the caller holds its manifest",
                    metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.error": "\(returnError)"]
                )
            }
            throw HandoffError.transportUnavailable(
                "Could not read the chunks of handoff '\(label)'/\(id): \(error); it was given back", underlying: error)
        }
        chunkReaders.stopReading(topicPrefix)
        try? await client.unsubscribe(topicPrefix + "+")
        let payload = try assembly.finish()
        let whole = try HandoffEnvelope.read(payload, topicLabel: label, topicID: id, keys: router.options.keys, maximumSize: .max)
        try parsed.check(whole, madeFor: manifest)
        chunkReaders.markAssembled(manifest, topicPrefix: topicPrefix, count: parsed.count)
        logger.debug(
            "Read and checked the chunks of a handoff",
            metadata: [
                "handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.bytes": "\(parsed.length)",
                "handoff.chunks": "\(parsed.count)",
            ]
        )
        // Its wire form stays the manifest: a give-back or a dead letter stores that, verbatim.
        return (whole.withReceivedPayload(manifest.encoded()), payload)
    }

    public func discardChunks(of envelope: HandoffEnvelope, timeout: Duration) async throws {
        guard let (topicPrefix, count) = chunkReaders.takeAssembled(envelope) else { return }
        let client = self.client
        try await withDeadline(timeout, operation: "remove the chunks of handoff '\(envelope.label)'/\(envelope.id)") {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<count {
                    group.addTask {
                        try await client.publish(topicPrefix + String(index), payload: Data(), qos: .atLeastOnce, retain: true)
                    }
                }
                try await group.waitForAll()
            }
        }
    }
}
