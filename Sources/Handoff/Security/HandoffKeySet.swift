import Crypto
import Foundation

/// One secret shared by the participants of a prefix, under an id that envelopes and claims name
/// (docs/PROTOCOL.md §10.1).
///
/// The secret itself never travels: participants derive a MAC key and an AES key from it with HKDF-SHA256.
public struct HandoffKey: Sendable {
    /// The smallest secret accepted, in bytes.
    public static let minimumSecretSize = 32

    /// The key's id, 1–64 characters of `A–Z a–z 0–9 . _ -`, written into signatures and encryption headers.
    public let id: String
    /// The derived subkeys' bytes (`SymmetricKey` is not `Sendable`).
    private let macKeyBytes: [UInt8]
    private let encryptionKeyBytes: [UInt8]
    /// Signs envelopes and claims (HMAC-SHA256).
    var macKey: SymmetricKey { SymmetricKey(data: macKeyBytes) }
    /// Encrypts the data of envelopes (AES-256-GCM).
    var encryptionKey: SymmetricKey { SymmetricKey(data: encryptionKeyBytes) }

    /// Creates a key from its id and secret.
    ///
    /// - Throws: ``HandoffError`` (``HandoffError/Code/invalidKey``) when the id breaks its rules or the secret is shorter than 32 bytes.
    public init(id: String, secret: some ContiguousBytes) throws(HandoffError) {
        guard Self.isValidID(id) else {
            throw HandoffError.invalidKey("key id \(HandoffError.quoted(id)) is not 1–64 characters of A–Z a–z 0–9 . _ -")
        }
        let secret = secret.withUnsafeBytes { Data($0) }
        guard secret.count >= Self.minimumSecretSize else {
            throw HandoffError.invalidKey(
                "the secret of key '\(id)' has \(secret.count) bytes; at least \(Self.minimumSecretSize) random bytes are needed"
            )
        }
        self.id = id
        let material = SymmetricKey(data: secret)
        self.macKeyBytes = Self.subkey(material, "swift-handoff signature")
        self.encryptionKeyBytes = Self.subkey(material, "swift-handoff encryption")
    }

    /// Whether `id` can name a key: 1–64 characters of `A–Z a–z 0–9 . _ -`.
    public static func isValidID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count)
            && id.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                    true
                default: false
                }
            }
    }

    private static func subkey(_ material: SymmetricKey, _ info: String) -> [UInt8] {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: material, salt: Data("swift-handoff/1".utf8), info: Data(info.utf8), outputByteCount: 32
        ).withUnsafeBytes { Array($0) }
    }

    /// The derived subkeys in lower-case hex, for test vectors.
    package var subkeysHex: (mac: String, encryption: String) {
        (HandoffEnvelope.hex(macKeyBytes), HandoffEnvelope.hex(encryptionKeyBytes))
    }
}

/// The keys of one prefix: the one that writes, and those that are also read (docs/PROTOCOL.md §10).
///
/// A participant configured with a key set signs every envelope and claim it writes, encrypts the data when
/// ``encrypts`` is set, and refuses handoffs that are unsigned or wrongly signed. To rotate keys across rolling
/// deploys, first add the new key as a read-only key everywhere, then make it the writing key, then drop the old one.
public struct HandoffKeySet: Sendable {
    /// Signs (and encrypts) what this participant writes; it is read too.
    public let writingKey: HandoffKey
    /// Every key this participant verifies and decrypts with, the writing key included, by id.
    let keys: [String: HandoffKey]
    /// Whether the data of the envelopes this participant writes is encrypted (AES-256-GCM). Readers decrypt either way.
    public var encrypts: Bool

    /// Creates a key set.
    ///
    /// - Parameters:
    ///   - writingKey: The key that signs and encrypts what this participant writes.
    ///   - readingKeys: More keys accepted when reading, such as the previous key during a rotation.
    ///   - encrypts: Whether to encrypt the data of the envelopes written.
    /// - Throws: ``HandoffError`` (``HandoffError/Code/invalidKey``) when two keys share an id.
    public init(writingKey: HandoffKey, readingKeys: [HandoffKey] = [], encrypts: Bool = false) throws(HandoffError) {
        var keys = [writingKey.id: writingKey]
        for key in readingKeys {
            guard keys.updateValue(key, forKey: key.id) == nil else { throw HandoffError.invalidKey("two keys have the id '\(key.id)'") }
        }
        self.writingKey = writingKey
        self.keys = keys
        self.encrypts = encrypts
    }

    /// Reads a key file: UTF-8 text, one key per line as `KEYID BASE64SECRET`; blank lines and lines starting with `#`
    /// are skipped. The first key writes, the others are read only. The same file works with the `handoff` CLI
    /// (`--keys`) and interop/python (`--keys`).
    ///
    /// - Throws: ``HandoffError`` (``HandoffError/Code/invalidKey``) naming the line that is wrong, or when there is no key.
    public init(keyFile text: String, encrypts: Bool = false) throws(HandoffError) {
        var parsed: [HandoffKey] = []
        for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            let fields = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2, let secret = Data(base64Encoded: String(fields[1])) else {
                throw HandoffError.invalidKey("key file line \(number + 1): expected 'KEYID BASE64SECRET'")
            }
            do {
                parsed.append(try HandoffKey(id: String(fields[0]), secret: secret))
            } catch {
                throw HandoffError.invalidKey("key file line \(number + 1): \(error.detail)")
            }
        }
        guard let first = parsed.first else { throw HandoffError.invalidKey("the key file holds no key") }
        try self.init(writingKey: first, readingKeys: Array(parsed.dropFirst()), encrypts: encrypts)
    }

    /// Reads the key file at `url` (see ``init(keyFile:encrypts:)``).
    public init(contentsOf url: URL, encrypts: Bool = false) throws(HandoffError) {
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw HandoffError.invalidKey("cannot read the key file \(url.path): \(error.localizedDescription)")
        }
        try self.init(keyFile: text, encrypts: encrypts)
    }

    /// The key named `id`, if this set reads it.
    func key(_ id: String) -> HandoffKey? { keys[id] }

    /// The ids of every key read, sorted.
    public var keyIDs: [String] { keys.keys.sorted() }
}
