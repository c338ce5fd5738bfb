import Foundation
import Handoff
import MosquittoTestKit
import Testing

@Suite("handoff: connection options and bad input", .timeLimit(.minutes(1)))
struct BadInputTests {
    @Test(
        "credentials from the URL or the environment, TLS with a CA file; wrong credentials, wrong CA, a broker that is down: one line, status 1"
    )
    func connections() async throws {
        try await withFixture { fixture in
            let broker = fixture.broker
            let authURL = "mqtt://127.0.0.1:\(broker.authenticatedPort)"
            let prefix = ["HANDOFF_PREFIX": fixture.topics.prefix]
            let inURL = try await handoff(
                ["list", "--broker", "mqtt://handoff:handoff-secret@127.0.0.1:\(broker.authenticatedPort)"], environment: prefix)
            #expect(inURL.status == 0, "\(inURL)")
            let fromEnvironment = try await handoff(
                ["list"],
                environment: prefix.merging([
                    "HANDOFF_BROKER_URL": authURL, "HANDOFF_USERNAME": "handoff", "HANDOFF_PASSWORD": "handoff-secret",
                ]) { $1 })
            #expect(fromEnvironment.status == 0, "\(fromEnvironment)")
            let wrong = try await handoff(
                ["list", "--broker", authURL, "--username", "handoff", "--password", "wrong"], environment: prefix)
            #expect(wrong.isCleanFailure(), "\(wrong)")
            #expect(wrong.stderr.lowercased().contains("credentials") || wrong.stderr.lowercased().contains("not authorized"), "\(wrong)")
            let anonymous = try await handoff(["list", "--broker", authURL], environment: prefix)
            #expect(anonymous.isCleanFailure(), "\(anonymous)")

            let certificates = broker.certificates
            let tlsURL = "mqtts://127.0.0.1:\(broker.tlsPort)"
            let tls = try await handoff(
                ["list", "--broker", tlsURL], environment: prefix.merging(["HANDOFF_CA_FILE": certificates.caFile.path]) { $1 })
            #expect(tls.status == 0, "\(tls)")
            let wrongCA = try await handoff(["list", "--broker", tlsURL, "--ca-file", certificates.wrongCAFile.path], environment: prefix)
            #expect(wrongCA.isCleanFailure(), "\(wrongCA)")
            let missingFile = try await handoff(["list", "--broker", tlsURL, "--ca-file", "/nonexistent/ca.crt"], environment: prefix)
            #expect(missingFile.isCleanFailure() && missingFile.stderr.contains("cannot read the TLS file"), "\(missingFile)")

            let fallback = FileManager.default.temporaryDirectory.appendingPathComponent("cli-down-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: fallback) }
            let file = envelope(try HandoffLabel("counter"), json: "1")
            try FileManager.default.createDirectory(at: fallback.appendingPathComponent("counter"), withIntermediateDirectories: true)
            try file.encoded().write(to: fallback.appendingPathComponent("counter/\(file.id).handoff"))
            await broker.stop()
            for command in [
                ["list"], ["show", "counter", "x1"], ["watch"], ["dead-letters"], ["requeue", "counter", "x1"],
                ["purge", "--all", "--yes"],
                ["claim", "counter", "x1", "--to", "/tmp/never-written-\(UUID())"], ["republish", fallback.path],
            ] {
                let down = try await handoff(command, environment: fixture.environment)
                #expect(down.isCleanFailure(), "\(command): \(down)")
                #expect(down.stderr.contains("Connection refused"), "\(command): \(down)")
            }
        }
    }

    @Test(
        "bad command lines: a label with a control character, an id with a wildcard, a bad prefix, a bad URL, a bad timeout: one line, no backtrace"
    )
    func commandLines() async throws {
        let environment = ["HANDOFF_BROKER_URL": "mqtt://127.0.0.1:1"]
        let label = try await handoff(["show", "bad\u{1}label", "x"], environment: environment)
        #expect(label.isCleanFailure(status: 64), "\(label)")
        #expect(label.stderr.contains("control characters"))
        let long = try await handoff(["list", "--label", String(repeating: "x", count: 201)], environment: environment)
        #expect(long.isCleanFailure(status: 64), "\(long)")
        let wildcard = try await handoff(["requeue", "counter", "a/+"], environment: environment)
        #expect(wildcard.isCleanFailure(status: 64), "\(wildcard)")
        let claimID = try await handoff(["claim", "counter", "not an id", "--to", "/tmp/x"], environment: environment)
        #expect(claimID.isCleanFailure(status: 64), "\(claimID)")
        let prefix = try await handoff(["list", "--prefix", "a/#"], environment: environment)
        #expect(prefix.isCleanFailure(), "\(prefix)")
        #expect(prefix.stderr.contains("wildcard"))
        let url = try await handoff(["list", "--broker", "ftp://example.org"], environment: environment)
        #expect(url.isCleanFailure() && url.stderr.contains("Unsupported scheme 'ftp'"), "\(url)")
        let timeout = try await handoff(["list"], environment: environment.merging(["HANDOFF_TIMEOUT": "soon"]) { $1 })
        #expect(timeout.isCleanFailure() && timeout.stderr.contains("HANDOFF_TIMEOUT"), "\(timeout)")
        let unknown = try await handoff(["frobnicate"], environment: environment)
        #expect(unknown.isCleanFailure(status: 64), "\(unknown)")
        let help = try await handoff(["--help"])
        #expect(help.status == 0 && help.stdout.contains("SUBCOMMANDS"))
    }
}
