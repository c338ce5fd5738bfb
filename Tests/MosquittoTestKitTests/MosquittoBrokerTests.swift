import Foundation
import Testing

@testable import MosquittoTestKit

@Suite("A private mosquitto broker", .timeLimit(.minutes(1)))
struct MosquittoBrokerTests {
    @Test("A retained message published on the plain port reaches a later subscriber")
    func retainedMessageReachesLaterSubscriber() async throws {
        try await withMosquittoBroker { broker in
            #expect(broker.plainURL == "mqtt://127.0.0.1:\(broker.plainPort)")
            let published = try await MosquittoClients.publish(
                broker, ["-p", "\(broker.plainPort)", "-t", "kit/retained", "-m", "hello", "-r", "-q", "1"]
            )
            #expect(published.succeeded, "\(published.output)")
            let received = try await MosquittoClients.receiveOne(broker, ["-p", "\(broker.plainPort)", "-t", "kit/retained"])
            #expect(received.output == "hello\n", "\(received.output)\n\(broker.logTail(lines: 20))")
        }
    }

    @Test("The authenticated port refuses anonymous clients and wrong passwords, accepts handoff, applies the ACL")
    func authenticatedPortChecksCredentialsAndACL() async throws {
        try await withMosquittoBroker { broker in
            let port = ["-p", "\(broker.authenticatedPort)", "-q", "1", "-m", "x"]
            let anonymous = try await MosquittoClients.publish(broker, port + ["-t", "kit/a"])
            #expect(!anonymous.succeeded, "\(anonymous.output)")
            let wrongPassword = try await MosquittoClients.publish(
                broker, port + ["-t", "kit/a", "-u", "handoff", "-P", "wrong"]
            )
            #expect(!wrongPassword.succeeded, "\(wrongPassword.output)")
            let handoff = try await MosquittoClients.publish(
                broker, port + ["-t", "kit/a", "-u", "handoff", "-P", "handoff-secret"]
            )
            #expect(handoff.succeeded, "\(handoff.output)")

            // MQTT 5 reports the ACL refusal in the PUBACK; mosquitto_pub prints it but still exits 0.
            let restricted = port + ["-V", "5", "-u", "restricted", "-P", "restricted-secret"]
            let forbidden = try await MosquittoClients.publish(broker, restricted + ["-t", "kit/forbidden"])
            #expect(forbidden.output.contains("Not authorized"), "\(forbidden.output)")
            let allowed = try await MosquittoClients.publish(broker, restricted + ["-t", "allowed/topic"])
            #expect(allowed.succeeded && !allowed.output.contains("Not authorized"), "\(allowed.output)")
        }
    }

    @Test("The TLS port accepts the generated CA and refuses the wrong one")
    func tlsPortChecksCertificateAuthority() async throws {
        try await withMosquittoBroker { broker in
            let certificates = broker.certificates
            let port = ["-p", "\(broker.tlsPort)", "-t", "kit/tls", "-m", "x", "-q", "1"]
            let trusted = try await MosquittoClients.publish(broker, port + ["--cafile", certificates.caFile.path])
            #expect(trusted.succeeded, "\(trusted.output)\n\(broker.logTail(lines: 20))")
            let withClientCertificate = try await MosquittoClients.publish(
                broker,
                port + [
                    "--cafile", certificates.caFile.path,
                    "--cert", certificates.clientCertificateFile.path, "--key", certificates.clientKeyFile.path,
                ]
            )
            #expect(withClientCertificate.succeeded, "\(withClientCertificate.output)")
            let wrongCA = try await MosquittoClients.publish(broker, port + ["--cafile", certificates.wrongCAFile.path])
            #expect(!wrongCA.succeeded, "\(wrongCA.output)")
        }
    }

    @Test("A retained message survives restart() on the same ports")
    func retainedMessageSurvivesRestart() async throws {
        try await withMosquittoBroker { broker in
            let port = ["-p", "\(broker.plainPort)", "-t", "kit/persisted"]
            let published = try await MosquittoClients.publish(broker, port + ["-m", "kept", "-r", "-q", "1"])
            #expect(published.succeeded, "\(published.output)")
            try await broker.restart()
            let received = try await MosquittoClients.receiveOne(broker, port)
            #expect(received.output == "kept\n", "\(received.output)\n\(broker.logTail(lines: 20))")
            #expect(FileManager.default.fileExists(atPath: broker.dataDirectory.appendingPathComponent("mosquitto.db").path))
        }
    }

    @Test("An acknowledged retained message survives a SIGKILL shortly after (autosave on every change)")
    func retainedMessageSurvivesKill() async throws {
        try await withMosquittoBroker { broker in
            let port = ["-p", "\(broker.plainPort)", "-t", "kit/crash"]
            let published = try await MosquittoClients.publish(broker, port + ["-m", "saved", "-r", "-q", "1"])
            #expect(published.succeeded, "\(published.output)")
            try await Task.sleep(for: .milliseconds(200))
            await broker.kill()
            try await broker.start()
            let received = try await MosquittoClients.receiveOne(broker, port)
            #expect(received.output == "saved\n", "\(received.output)\n\(broker.logTail(lines: 20))")
        }
    }

    @Test("The log tells the broker is running, and the private folder is removed afterwards")
    func logAndCleanup() async throws {
        let directory = try await withMosquittoBroker { broker in
            #expect(broker.logTail(lines: 50).contains(" running"))
            #expect(broker.logTail(lines: 0).isEmpty)
            return broker.directory
        }
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    @Test("A missing mosquitto is an error that says how to install it")
    func missingProgramSaysHowToInstall() throws {
        let error = try #require(throws: MosquittoTestKitError.self) {
            try ExternalProgram.mosquitto.locate(searchFolders: [])
        }
        #expect(error.code == .executableNotFound)
        #expect(error.message.contains("apt-get install mosquitto"))
        #expect(error.message.contains("brew install mosquitto"))
    }
}
