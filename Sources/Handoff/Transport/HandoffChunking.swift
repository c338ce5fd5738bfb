import Crypto

import struct Foundation.Data

/// A transport that hands large states off in chunks plus a manifest (docs/PROTOCOL.md §12), such as
/// `MQTTHandoffTransport`: the manifest is the handoff that waits and is claimed; the state's bytes travel beside it and
/// are read by the claim's winner only.
///
/// ``HandoffChannel`` uses it on its own: it claims a manifest before reading its state (``assemble(_:timeout:)``), and
/// once the caller merged the state (``HandoffChannel/merged(_:)``), the chunks are removed
/// (``discardChunks(of:timeout:)``).
public protocol HandoffChunking: HandoffTransport {
    /// Whether ``HandoffTransport/initiate(_:timeout:)`` will send `envelope` in chunks. The channel then leaves its data as it
    /// is (no payload made beside it: the chunks are slices of the data).
    func willChunk(_ envelope: HandoffEnvelope) -> Bool

    /// Checks a manifest before it is claimed: a manifest of a chunk format this release cannot read throws
    /// ``HandoffError`` (``HandoffError/Code/unreadableEnvelope``) with reason `unsupported-format` (leave it in place), an unreadable one with `malformed`
    /// (dead-letter it).
    func checkManifest(_ manifest: HandoffEnvelope) throws(HandoffError)

    /// After a won claim of a manifest: reads its chunks, checks each one's SHA-256 and the whole state's (and, when keyed,
    /// the signature and encryption of the envelope the chunks make), and returns that envelope with the whole state as its
    /// data. Its wire form stays the manifest as received, so that a give-back or a dead letter stores the manifest verbatim.
    ///
    /// - Throws: ``HandoffError`` (``HandoffError/Code/unreadableEnvelope``) when the handoff must be dead-lettered as a whole (`chunk-missing`,
    ///   `integrity-failure`, `malformed`, `too-large`, `signature-invalid`, `decryption-failed`); any other error when the
    ///   chunks could not be read (the transport then gave the manifest back, or reports why it could not).
    func assemble(_ manifest: HandoffEnvelope, timeout: Duration) async throws -> HandoffEnvelope

    /// Removes the chunks of a handoff assembled here once its state was merged; does nothing for any other envelope.
    func discardChunks(of envelope: HandoffEnvelope, timeout: Duration) async throws
}

extension HandoffEnvelope {
    /// The `contentType` of a chunk manifest (docs/PROTOCOL.md §12). A reader that does not know chunking reads it as a
    /// content type it cannot decode, and dead-letters the manifest (`undecodable-state`) instead of merging it.
    public static let chunkManifestContentType = "application/vnd.swift-handoff.chunks+json"

    /// Whether this envelope is a chunk manifest (its `contentType` compared as a media type).
    public var isChunkManifest: Bool {
        sameMediaType(contentType, Self.chunkManifestContentType)
    }
}

extension HandoffEnvelope {
    /// The SHA-256 of `bytes` in lower-case hexadecimal (for the chunk hashes of docs/PROTOCOL.md §12).
    package static func sha256Hex(_ bytes: Data) -> String {
        hex(SHA256.hash(data: bytes))
    }
}
