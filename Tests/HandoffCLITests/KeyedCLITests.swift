import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient
import Testing

/// `--keys` (docs/PROTOCOL.md §10): `show` verifies the signature and decrypts, `claim` signs its claim so that keyed
/// participants take it for a verdict.
@Suite("handoff --keys", .timeLimit(.minutes(1)))
struct KeyedCLITests {
    static let secret = Data((0..<32).map { UInt8($0 ^ 0x5C) })

    @Test(
        "show: an encrypted, signed handoff is verified and decrypted with --keys, shown as encrypted without, and refused with another key"
    )
    func showKeyed() async throws {
        try await withFixture { fixture in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("handoff-cli-keys-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let keyFile = directory.appendingPathComponent("keys")
            try "k1 \(Self.secret.base64EncodedString())\n".write(to: keyFile, atomically: true, encoding: .utf8)
            let otherFile = directory.appendingPathComponent("other")
            try "k1 \(Data(repeating: 7, count: 32).base64EncodedString())\n".write(to: otherFile, atomically: true, encoding: .utf8)
            let keys = try HandoffKeySet(contentsOf: keyFile, encrypts: true)
            let label = try HandoffLabel("counter")
            let sealed = try keys.seal(envelope(label, json: #"{"count":42,"token":"secret-token"}"#))
            try await fixture.retain(fixture.topics.handoff(label, id: sealed.id.rawValue), sealed.encoded())

            let verified = try await handoff(
                ["show", "counter", sealed.id.rawValue, "--keys", keyFile.path], environment: fixture.environment)
            #expect(verified.status == 0, "\(verified)")
            #expect(verified.lines.contains { $0.hasPrefix("signature:  verified (key k1)") })
            #expect(verified.stdout.contains("secret-token"))

            let plain = try await handoff(["show", "counter", sealed.id.rawValue], environment: fixture.environment)
            #expect(plain.status == 0, "\(plain)")
            #expect(plain.lines.contains { $0.hasPrefix("signature:  present (key k1), not verified") })
            #expect(plain.lines.contains { $0.hasPrefix("state:      encrypted with key k1") })
            #expect(!plain.stdout.contains("secret-token"))

            let wrong = try await handoff(
                ["show", "counter", sealed.id.rawValue, "--keys", otherFile.path], environment: fixture.environment)
            #expect(wrong.isCleanFailure(), "\(wrong)")
            #expect(wrong.lines.contains { $0.hasPrefix("signature:  FAILED") })
        }
    }
}
