import Crypto
import Foundation

/// Signing, verifying, encrypting and decrypting envelopes and claims (docs/PROTOCOL.md §10).
extension HandoffKeySet {
    /// The `alg` of signatures and signed claims.
    package static let signatureAlgorithm = "hmac-sha256"
    /// The `alg` of encrypted data.
    package static let encryptionAlgorithm = "aes-256-gcm"

    /// `envelope` as this participant publishes it: its data encrypted if ``encrypts`` is set, and signed with the
    /// writing key (docs/PROTOCOL.md §10.2, §10.3).
    ///
    /// - Throws: ``HandoffError/encodingFailed(label:detail:underlying:)`` if encryption fails.
    /// - Parameter nonce: The AES-GCM nonce; random by default (fixed only by test vectors: never reuse one).
    package func seal(_ envelope: HandoffEnvelope, nonce: AES.GCM.Nonce = AES.GCM.Nonce()) throws(HandoffError) -> HandoffEnvelope {
        var sealed = envelope
        sealed.encryption = nil
        if encrypts {
            do {
                let box = try AES.GCM.seal(envelope.data, using: writingKey.encryptionKey, nonce: nonce)
                var data = Data(capacity: box.ciphertext.count + box.tag.count)
                data.append(box.ciphertext)
                data.append(box.tag)
                sealed.data = data
            } catch {
                throw .encodingFailed(label: envelope.label, detail: "AES-GCM encryption failed: \(error)")
            }
            sealed.encryption = .valid(.init(alg: Self.encryptionAlgorithm, key: writingKey.id, value: HandoffEnvelope.hex(nonce)))
        }
        sealed.digest = sealed.sha256
        sealed.signature = .valid(.init(alg: Self.signatureAlgorithm, key: writingKey.id, value: ""))
        let mac = HMAC<SHA256>.authenticationCode(for: sealed.signedText(), using: writingKey.macKey)
        sealed.signature = .valid(.init(alg: Self.signatureAlgorithm, key: writingKey.id, value: HandoffEnvelope.hex(mac)))
        return sealed
    }

    /// Checks 9 and 10 of docs/PROTOCOL.md §10.4 on an envelope that passed §4: its signature, then its encryption.
    /// Returns it with its data decrypted (and `encryption` gone); `signature` stays, for the claims of its round.
    ///
    /// - Throws: ``HandoffError`` (``HandoffError/Code/unreadableEnvelope``) with reason `signatureInvalid`, `unknownKey` or `decryptionFailed`.
    package func open(_ envelope: HandoffEnvelope) throws(HandoffError) -> HandoffEnvelope {
        try verifySignature(of: envelope)
        return try decrypt(envelope)
    }

    /// What a reader without a key set does with an envelope (docs/PROTOCOL.md §10.4): it ignores a signature, and
    /// leaves an encrypted one in place (`unknownKey`).
    package static func openUnkeyed(_ envelope: HandoffEnvelope) throws(HandoffError) -> HandoffEnvelope {
        guard envelope.encryption == nil else {
            throw HandoffError.unreadableEnvelope(.unknownKey, detail: "the data is encrypted and this participant has no key set")
        }
        return envelope
    }

    private func verifySignature(of envelope: HandoffEnvelope) throws(HandoffError) {
        guard let field = envelope.signature else {
            throw HandoffError.unreadableEnvelope(
                .signatureInvalid, detail: "the envelope is not signed, and this participant requires signatures")
        }
        guard case .valid(let signature) = field else {
            if case .invalid(let why) = field { throw HandoffError.unreadableEnvelope(.signatureInvalid, detail: why) }
            throw HandoffError.unreadableEnvelope(.signatureInvalid, detail: "unreadable signature")
        }
        guard signature.alg == Self.signatureAlgorithm else {
            throw HandoffError.unreadableEnvelope(
                .signatureInvalid, detail: "signature algorithm '\(signature.alg.prefix(64))' is not '\(Self.signatureAlgorithm)'"
            )
        }
        guard HandoffKey.isValidID(signature.key) else {
            throw HandoffError.unreadableEnvelope(.signatureInvalid, detail: "'signature.key' is not a key id")
        }
        guard let key = key(signature.key) else {
            throw HandoffError.unreadableEnvelope(
                .unknownKey,
                detail:
                    "signed with key '\(signature.key)', which this participant does not hold (it holds \(keyIDs.joined(separator: ", ")))"
            )
        }
        guard let mac = Self.bytes(hex: signature.value, count: SHA256.byteCount),
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: envelope.signedText(), using: key.macKey)
        else {
            throw HandoffError.unreadableEnvelope(
                .signatureInvalid, detail: "the signature (key '\(signature.key)') does not match the envelope")
        }
    }

    private func decrypt(_ envelope: HandoffEnvelope) throws(HandoffError) -> HandoffEnvelope {
        guard let field = envelope.encryption else { return envelope }
        guard case .valid(let encryption) = field else {
            if case .invalid(let why) = field { throw HandoffError.unreadableEnvelope(.decryptionFailed, detail: why) }
            throw HandoffError.unreadableEnvelope(.decryptionFailed, detail: "unreadable encryption header")
        }
        guard encryption.alg == Self.encryptionAlgorithm else {
            throw HandoffError.unreadableEnvelope(
                .decryptionFailed, detail: "encryption algorithm '\(encryption.alg.prefix(64))' is not '\(Self.encryptionAlgorithm)'"
            )
        }
        guard let nonceBytes = Self.bytes(hex: encryption.value, count: 12), let nonce = try? AES.GCM.Nonce(data: nonceBytes) else {
            throw HandoffError.unreadableEnvelope(.decryptionFailed, detail: "'encryption.nonce' is not 24 hexadecimal digits")
        }
        guard let key = key(encryption.key) else {
            throw HandoffError.unreadableEnvelope(
                .unknownKey,
                detail:
                    "encrypted with key '\(encryption.key.prefix(64))', which this participant does not hold (it holds \(keyIDs.joined(separator: ", ")))"
            )
        }
        let data = envelope.data
        guard data.count >= 16 else {
            throw HandoffError.unreadableEnvelope(.decryptionFailed, detail: "the data is shorter than an AES-GCM tag")
        }
        let plaintext: Data
        do {
            let box = try AES.GCM.SealedBox(nonce: nonce, ciphertext: data.dropLast(16), tag: data.suffix(16))
            plaintext = try AES.GCM.open(box, using: key.encryptionKey)
        } catch {
            throw HandoffError.unreadableEnvelope(
                .decryptionFailed, detail: "the data does not decrypt with key '\(encryption.key)' (AES-GCM tag mismatch)")
        }
        var opened = envelope
        opened.data = plaintext
        opened.encryption = nil
        return opened
    }

    // MARK: - Claims

    /// The value of `handoff-claim-signature` for a claim (docs/PROTOCOL.md §10.5).
    package func claimSignature(topic: String, claimBy: String, purpose: String?, roundMAC: String) -> String {
        let text = Self.claimText(topic: topic, claimBy: claimBy, purpose: purpose, roundMAC: roundMAC)
        let mac = HMAC<SHA256>.authenticationCode(for: text, using: writingKey.macKey)
        return "\(Self.signatureAlgorithm):\(writingKey.id):\(HandoffEnvelope.hex(mac))"
    }

    /// Whether `signature` (a `handoff-claim-signature`) verifies for this claim with a key of this set.
    package func verifiesClaim(_ signature: String?, topic: String, claimBy: String, purpose: String?, roundMAC: String?) -> Bool {
        guard let signature, let roundMAC else { return false }
        let parts = signature.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == Self.signatureAlgorithm, let key = key(String(parts[1])),
            let mac = Self.bytes(hex: String(parts[2]), count: SHA256.byteCount)
        else { return false }
        let text = Self.claimText(topic: topic, claimBy: claimBy, purpose: purpose, roundMAC: roundMAC)
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: text, using: key.macKey)
    }

    package static func claimText(topic: String, claimBy: String, purpose: String?, roundMAC: String) -> Data {
        var text = SignedText(domain: "swift-handoff-claim/1")
        text.field(topic)
        text.field(claimBy)
        text.field(purpose ?? "")
        text.field(roundMAC.lowercased())
        return text.data
    }

    // MARK: - Hex

    /// `count` bytes from exactly `2 × count` hex digits of either case; `nil` otherwise.
    package static func bytes(hex: String, count: Int) -> Data? {
        let digits = Array(hex.utf8)
        guard digits.count == count * 2 else { return nil }
        var out = Data(capacity: count)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension HandoffEnvelope {
    /// The signed text of docs/PROTOCOL.md §10.2: what `signature.mac` authenticates.
    package func signedText() -> Data {
        var text = SignedText(domain: "swift-handoff-signature/1")
        text.field(Self.format)
        text.field(id.rawValue)
        text.field(label.rawValue)
        text.field(String(vsn))
        text.field(createdAtText ?? RFC3339.format(createdAt))
        text.field(origin.instance)
        text.field(origin.host ?? "")
        text.field(origin.pid.map { String($0) } ?? "")
        text.field(contentType)
        text.field(String(data.count))
        text.field(sha256.lowercased())
        text.field(incarnation.map { String($0) } ?? "")
        let encryption = encryption?.member
        text.field(encryption?.alg ?? "")
        text.field(encryption?.key ?? "")
        text.field(encryption?.value.lowercased() ?? "")
        let signature = signature?.member
        text.field(signature?.alg ?? "")
        text.field(signature?.key ?? "")
        return text.data
    }
}

/// Length-prefixed lines: a domain line, then `byte count:value` per field, each ending in 0x0A. A value may hold any
/// character (even 0x0A) without making two texts alike.
package struct SignedText {
    private(set) var bytes: [UInt8]

    package init(domain: String) {
        bytes = Array(domain.utf8)
        bytes.append(0x0A)
    }

    package mutating func field(_ value: String) {
        bytes.append(contentsOf: String(value.utf8.count).utf8)
        bytes.append(UInt8(ascii: ":"))
        bytes.append(contentsOf: value.utf8)
        bytes.append(0x0A)
    }

    package var data: Data { Data(bytes) }
}
