import Crypto
import Foundation
import Testing

@testable import Handoff

/// Signed and encrypted envelopes and signed claims (docs/PROTOCOL.md §10), without a broker.
@Suite("Signed and encrypted envelopes")
struct SealingTests {
    static let secret1 = Data((0..<32).map { UInt8($0) })
    static let secret2 = Data((0..<32).map { UInt8(255 - $0) })

    static func key(_ id: String, _ secret: Data) throws -> HandoffKey { try HandoffKey(id: id, secret: secret) }

    static func keys(encrypts: Bool = false) throws -> HandoffKeySet {
        try HandoffKeySet(writingKey: key("k1", secret1), encrypts: encrypts)
    }

    /// Seals, encodes and reads back, as a keyed reader does.
    static func roundTrip(_ envelope: HandoffEnvelope, writer: HandoffKeySet, reader: HandoffKeySet?) throws(HandoffError)
        -> HandoffEnvelope
    {
        let payload = try! writer.seal(envelope).encoded()
        let decoded = try HandoffEnvelope.decode(payload)
        guard let reader else { return try HandoffKeySet.openUnkeyed(decoded) }
        return try reader.open(decoded)
    }

    static func reason(_ body: () throws(HandoffError) -> HandoffEnvelope) -> HandoffRejection.Reason? {
        do {
            _ = try body()
            return nil
        } catch {
            return error.reason
        }
    }

    @Test("a signed envelope verifies, and its header carries the signature object")
    func signedRoundTrip() throws {
        let envelope = try EnvelopeTests.sample()
        let keys = try Self.keys()
        let payload = try keys.seal(envelope).encoded()
        let header = String(decoding: payload.prefix(while: { $0 != 0x0A }), as: UTF8.self)
        #expect(header.contains(#""signature":{"alg":"hmac-sha256","key":"k1","mac":""#))
        let opened = try keys.open(HandoffEnvelope.decode(payload))
        #expect(opened.data == envelope.data)
        #expect(opened.signatureMAC?.count == 64)
        // A reader without keys ignores the signature.
        #expect(try HandoffKeySet.openUnkeyed(HandoffEnvelope.decode(payload)).data == envelope.data)
    }

    @Test("an encrypted envelope hides the data, keeps the header readable, and decrypts with the key")
    func encryptedRoundTrip() throws {
        let state = Data(#"{"count":42,"secret":"token-123"}"#.utf8)
        let envelope = try EnvelopeTests.sample(data: state)
        let keys = try Self.keys(encrypts: true)
        let payload = try keys.seal(envelope).encoded()
        #expect(payload.range(of: Data("token-123".utf8)) == nil)
        let decoded = try HandoffEnvelope.decode(payload)
        #expect(decoded.label == envelope.label && decoded.vsn == envelope.vsn && decoded.contentType == envelope.contentType)
        #expect(decoded.data.count == state.count + 16)
        #expect(try keys.open(decoded).data == state)
        // Without keys: left in place, never decoded as if it were the state.
        #expect(Self.reason { () throws(HandoffError) in try HandoffKeySet.openUnkeyed(decoded) } == .unknownKey)
        // Two seals of one envelope use two nonces.
        #expect(try keys.seal(envelope).encoded() != payload)
    }

    @Test("unsigned, wrongly signed, tampered and foreign-key envelopes are refused with their reasons")
    func refusals() throws {
        let envelope = try EnvelopeTests.sample()
        let keys = try Self.keys()
        // Unsigned.
        #expect(Self.reason { () throws(HandoffError) in try keys.open(HandoffEnvelope.decode(envelope.encoded())) } == .signatureInvalid)
        // Signed with a key of the same id but another secret.
        let impostor = try HandoffKeySet(writingKey: Self.key("k1", Self.secret2))
        #expect(
            Self.reason { () throws(HandoffError) in try Self.roundTrip(envelope, writer: impostor, reader: keys) } == .signatureInvalid)
        // Signed with a key this reader does not hold: left for one that does.
        let other = try HandoffKeySet(writingKey: Self.key("k2", Self.secret2))
        #expect(Self.reason { () throws(HandoffError) in try Self.roundTrip(envelope, writer: other, reader: keys) } == .unknownKey)
        // A signed field changed after signing (the vsn).
        var sealed = try keys.seal(envelope)
        let mac = sealed.signature
        sealed.vsn = 4
        sealed.signature = mac
        #expect(Self.reason { () throws(HandoffError) in try keys.open(HandoffEnvelope.decode(sealed.encoded())) } == .signatureInvalid)
        // The signature object of the wrong shape.
        var text = String(decoding: try keys.seal(envelope).encoded(), as: UTF8.self)
        text = text.replacingOccurrences(of: #""alg":"hmac-sha256""#, with: #""alg":"hmac-md5""#)
        #expect(Self.reason { () throws(HandoffError) in try keys.open(HandoffEnvelope.decode(Data(text.utf8))) } == .signatureInvalid)
    }

    @Test("tampered ciphertext: integrity-failure with the sha256 left, signature-invalid with it recomputed")
    func tamperedCiphertext() throws {
        let envelope = try EnvelopeTests.sample(data: Data(repeating: 7, count: 100))
        let keys = try Self.keys(encrypts: true)
        let sealed = try keys.seal(envelope)
        var payload = sealed.encoded()
        payload[payload.endIndex - 20] ^= 0x01
        #expect(Self.reason { () throws(HandoffError) in try HandoffEnvelope.decode(payload) } == .integrityFailure)
        var recomputed = sealed
        var data = sealed.data
        data[data.startIndex + 3] ^= 0x01
        let signature = sealed.signature
        recomputed.data = data
        recomputed.signature = signature
        #expect(Self.reason { () throws(HandoffError) in try keys.open(HandoffEnvelope.decode(recomputed.encoded())) } == .signatureInvalid)
    }

    @Test("rotation: a reader with the new key writing and the old one reading reads both; an old reader refuses the new key in place")
    func rotation() throws {
        let envelope = try EnvelopeTests.sample()
        let old = try HandoffKeySet(writingKey: Self.key("k1", Self.secret1))
        let both = try HandoffKeySet(writingKey: Self.key("k2", Self.secret2), readingKeys: [Self.key("k1", Self.secret1)])
        #expect(try Self.roundTrip(envelope, writer: old, reader: both).data == envelope.data)
        #expect(try Self.roundTrip(envelope, writer: both, reader: both).data == envelope.data)
        #expect(Self.reason { () throws(HandoffError) in try Self.roundTrip(envelope, writer: both, reader: old) } == .unknownKey)
    }

    @Test("claims verify for their topic, claimer, purpose and round only")
    func claims() throws {
        let keys = try Self.keys()
        let topic = "handoff/handoffs/counter/abc"
        let mac = String(repeating: "ab", count: 32)
        let signature = keys.claimSignature(topic: topic, claimBy: "s1", purpose: "merge", roundMAC: mac)
        #expect(signature.hasPrefix("hmac-sha256:k1:"))
        #expect(keys.verifiesClaim(signature, topic: topic, claimBy: "s1", purpose: "merge", roundMAC: mac))
        #expect(keys.verifiesClaim(signature, topic: topic, claimBy: "s1", purpose: "merge", roundMAC: mac.uppercased()))
        #expect(!keys.verifiesClaim(signature, topic: topic, claimBy: "s2", purpose: "merge", roundMAC: mac))
        #expect(!keys.verifiesClaim(signature, topic: topic, claimBy: "s1", purpose: "already-merged", roundMAC: mac))
        #expect(!keys.verifiesClaim(signature, topic: topic + "x", claimBy: "s1", purpose: "merge", roundMAC: mac))
        #expect(!keys.verifiesClaim(signature, topic: topic, claimBy: "s1", purpose: "merge", roundMAC: String(repeating: "cd", count: 32)))
        #expect(!keys.verifiesClaim(nil, topic: topic, claimBy: "s1", purpose: "merge", roundMAC: mac))
        #expect(!keys.verifiesClaim(signature, topic: topic, claimBy: "s1", purpose: "merge", roundMAC: nil))
        let other = try HandoffKeySet(writingKey: Self.key("k2", Self.secret2))
        #expect(!other.verifiesClaim(signature, topic: topic, claimBy: "s1", purpose: "merge", roundMAC: mac))
    }

    @Test("key files: the first key writes, the rest read; bad lines are named")
    func keyFiles() throws {
        let text = """
            # rotation step 2
            k2 \(Self.secret2.base64EncodedString())

            k1 \(Self.secret1.base64EncodedString())
            """
        let keys = try HandoffKeySet(keyFile: text)
        #expect(keys.writingKey.id == "k2")
        #expect(keys.keyIDs == ["k1", "k2"])
        #expect(throws: HandoffError.self) { try HandoffKeySet(keyFile: "k1 \(Data(count: 16).base64EncodedString())") }
        #expect(throws: HandoffError.self) { try HandoffKeySet(keyFile: "k/1 \(Self.secret1.base64EncodedString())") }
        #expect(throws: HandoffError.self) { try HandoffKeySet(keyFile: "# nothing\n") }
        #expect(throws: HandoffError.self) {
            try HandoffKeySet(keyFile: "k1 \(Self.secret1.base64EncodedString())\nk1 \(Self.secret2.base64EncodedString())")
        }
    }
}
