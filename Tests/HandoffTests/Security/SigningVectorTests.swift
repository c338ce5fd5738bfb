import Crypto
import Foundation
import Testing

@testable import Handoff

/// The Swift side of interop/python/signing-vectors.json (docs/PROTOCOL.md §10): both implementations must derive the
/// same subkeys, sign the same texts, write the same payloads and give the same verdicts.
@Suite("Signing test vectors shared with interop/python")
struct SigningVectorTests {
    struct Vectors: Decodable {
        struct Key: Decodable { var id, secret, macKey, aesKey: String }
        struct KeyFile: Decodable {
            var name, text: String
            var ok: Bool
            var ids: [String]?
        }
        struct Origin: Decodable {
            var instance: String
            var host: String?
            var pid: Int32?
        }
        struct Envelope: Decodable {
            var name, id, label, createdAt, contentType, data, key, signedText, mac, payload, topicLabel, topicId, verdict: String
            var vsn: Int
            var origin: Origin
            var incarnation: Int?
            var nonce: String?
            var checkpoint: Bool
        }
        struct Claim: Decodable {
            var name, topic, claimBy, claimText, cmac, key, property, roundMac, verifyRoundMac: String
            var purpose: String?
            var verifies: Bool
        }
        struct Negative: Decodable {
            var name, payload, topicLabel, topicId, verdict, unkeyedVerdict: String
            var checkpoint: Bool
        }
        var keys: [Key]
        var readerKeyFile: String
        var keyFiles: [KeyFile]
        var envelopes: [Envelope]
        var claims: [Claim]
        var negatives: [Negative]
    }

    static let vectors: Vectors = {
        let file = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("interop/python/signing-vectors.json")
        return try! JSONDecoder().decode(Vectors.self, from: Data(contentsOf: file))
    }()

    static func key(_ id: String) throws -> HandoffKey {
        let key = try #require(vectors.keys.first { $0.id == id })
        return try HandoffKey(id: key.id, secret: try #require(Data(base64Encoded: key.secret)))
    }

    static var reader: HandoffKeySet { get throws { try HandoffKeySet(keyFile: vectors.readerKeyFile) } }

    /// The verdict of a reader (keyed or not) for a payload on its topic: `ok` or a reason code.
    static func verdict(_ payload: Data, label: String, topicID: String, checkpoint: Bool, keys: HandoffKeySet?) throws -> String {
        let label = try HandoffLabel(label)
        do {
            if checkpoint {
                _ = try HandoffEnvelope.readCheckpoint(payload, topicLabel: label, topicInstance: topicID, keys: keys, maximumSize: 1 << 26)
            } else {
                _ = try HandoffEnvelope.read(payload, topicLabel: label, topicID: topicID, keys: keys, maximumSize: 1 << 26)
            }
            return "ok"
        } catch {
            return error.reason.rawValue
        }
    }

    @Test("subkeys derived with HKDF-SHA256")
    func subkeys() throws {
        for vector in Self.vectors.keys {
            let subkeys = try Self.key(vector.id).subkeysHex
            #expect(subkeys.mac == vector.macKey, "\(vector.id)")
            #expect(subkeys.encryption == vector.aesKey, "\(vector.id)")
        }
    }

    @Test("key files parse to the same keys, or are refused")
    func keyFiles() {
        for file in Self.vectors.keyFiles {
            let keys = try? HandoffKeySet(keyFile: file.text)
            #expect((keys != nil) == file.ok, "\(file.name)")
            if let ids = file.ids, let keys {
                #expect(keys.writingKey.id == ids.first, "\(file.name)")
                #expect(keys.keyIDs == ids.sorted(), "\(file.name)")
            }
        }
    }

    @Test("envelopes: the same signed text, MAC and payload; read back by a keyed reader")
    func envelopes() throws {
        for vector in Self.vectors.envelopes {
            var keys = try HandoffKeySet(writingKey: Self.key(vector.key), encrypts: vector.nonce != nil)
            if vector.nonce == nil { keys.encrypts = false }
            var envelope = HandoffEnvelope(
                id: try HandoffID(vector.id), label: try HandoffLabel(vector.label), vsn: vector.vsn,
                createdAt: try #require(RFC3339.parse(vector.createdAt)),
                origin: HandoffOrigin(instance: vector.origin.instance, host: vector.origin.host, pid: vector.origin.pid),
                contentType: vector.contentType, data: try #require(Data(base64Encoded: vector.data)), incarnation: vector.incarnation
            )
            // As written, even where it is not the canonical form: what a signature covers.
            envelope.createdAtText = vector.createdAt
            let nonce =
                try vector.nonce.map { try AES.GCM.Nonce(data: try #require(HandoffKeySet.bytes(hex: $0, count: 12))) } ?? AES.GCM.Nonce()
            let sealed = try keys.seal(envelope, nonce: nonce)
            #expect(String(decoding: sealed.signedText(), as: UTF8.self) == vector.signedText, "\(vector.name)")
            #expect(sealed.signatureMAC == vector.mac, "\(vector.name)")
            let payload = try #require(Data(base64Encoded: vector.payload))
            #expect(sealed.encoded() == payload, "\(vector.name): payloads differ")
            #expect(
                try Self.verdict(
                    payload, label: vector.topicLabel, topicID: vector.topicId, checkpoint: vector.checkpoint, keys: Self.reader)
                    == vector.verdict, "\(vector.name)")
            if vector.verdict == "ok" {
                let label = try HandoffLabel(vector.topicLabel)
                let read =
                    vector.checkpoint
                    ? try HandoffEnvelope.readCheckpoint(
                        payload, topicLabel: label, topicInstance: vector.topicId, keys: Self.reader, maximumSize: 1 << 26)
                    : try HandoffEnvelope.read(payload, topicLabel: label, topicID: vector.topicId, keys: Self.reader, maximumSize: 1 << 26)
                #expect(read.data == envelope.data, "\(vector.name): the data read back differs")
            }
        }
    }

    @Test("claims: the same claim text and CMAC; verified only for their round")
    func claims() throws {
        let reader = try Self.reader
        for vector in Self.vectors.claims {
            let text = HandoffKeySet.claimText(
                topic: vector.topic, claimBy: vector.claimBy, purpose: vector.purpose, roundMAC: vector.roundMac)
            #expect(String(decoding: text, as: UTF8.self) == vector.claimText, "\(vector.name)")
            if let key = try? Self.key(vector.key) {
                let signature = try HandoffKeySet(writingKey: key).claimSignature(
                    topic: vector.topic, claimBy: vector.claimBy, purpose: vector.purpose, roundMAC: vector.roundMac)
                #expect(signature == "hmac-sha256:\(vector.key):\(vector.cmac)", "\(vector.name)")
            }
            let verified = reader.verifiesClaim(
                vector.property, topic: vector.topic, claimBy: vector.claimBy, purpose: vector.purpose, roundMAC: vector.verifyRoundMac)
            #expect(verified == vector.verifies, "\(vector.name)")
        }
    }

    @Test("negative payloads get the same verdicts, keyed and unkeyed")
    func negatives() throws {
        let reader = try Self.reader
        for vector in Self.vectors.negatives {
            let payload = try #require(Data(base64Encoded: vector.payload))
            let keyed = try Self.verdict(
                payload, label: vector.topicLabel, topicID: vector.topicId, checkpoint: vector.checkpoint, keys: reader)
            let unkeyed = try Self.verdict(
                payload, label: vector.topicLabel, topicID: vector.topicId, checkpoint: vector.checkpoint, keys: nil)
            #expect(keyed == vector.verdict, "\(vector.name)")
            #expect(unkeyed == vector.unkeyedVerdict, "\(vector.name)")
        }
    }
}
