import Foundation
import Testing

@testable import MosquittoTestKit

@Suite("Deriving a broker configuration from broker/mosquitto.conf")
struct BrokerConfigurationTemplateTests {
    let layout = BrokerDirectoryLayout(root: URL(fileURLWithPath: "/tmp/kit"))
    let certificates = TestCertificates(directory: URL(fileURLWithPath: "/tmp/certificates"))

    @Test("The committed configuration has a plain, an authenticated and a TLS listener, in that order")
    func committedConfiguration() throws {
        let template = try BrokerConfigurationTemplate(configDirectory: MosquittoBroker.defaultConfigDirectory())
        #expect(template.listeners.map(\.configuredPort) == [1883, 1884, 8883])
        #expect(template.listeners.map(\.role) == [.plain, .authenticated, .tls])
    }

    @Test("Listeners move to the given ports on 127.0.0.1 and paths into the broker's folder; other lines are kept")
    func rewritesListenersAndPaths() throws {
        let configDirectory = URL(fileURLWithPath: "/repo/broker")
        let template = try BrokerConfigurationTemplate(
            text: """
                # comment
                set_tcp_nodelay true
                persistence_location /mosquitto/data/
                listener 1883
                allow_anonymous true
                listener 1884 0.0.0.0
                password_file /mosquitto/config/passwd
                acl_file acl
                listener 8883
                cafile /mosquitto/config/certs/ca.crt
                certfile /mosquitto/config/certs/server.crt
                keyfile /mosquitto/config/certs/server.key
                """,
            configDirectory: configDirectory
        )
        let (text, copies) = template.render(
            ports: [10001, 10002, 10003], host: "127.0.0.1", layout: layout, certificates: certificates,
            runningAsRoot: false
        )
        let lines = text.components(separatedBy: "\n")
        #expect(
            lines.prefix(12) == [
                "# comment",
                "set_tcp_nodelay true",
                "persistence_location /tmp/kit/data/",
                "listener 10001 127.0.0.1",
                "allow_anonymous true",
                "listener 10002 127.0.0.1",
                "password_file /tmp/kit/passwd",
                "acl_file /tmp/kit/acl",
                "listener 10003 127.0.0.1",
                "cafile /tmp/kit/certs/ca.crt",
                "certfile /tmp/kit/certs/server.crt",
                "keyfile /tmp/kit/certs/server.key",
            ])
        #expect(lines.contains("log_dest file /tmp/kit/mosquitto.log"))
        #expect(!lines.contains("user root"))
        #expect(
            copies.contains(
                FileCopy(
                    source: configDirectory.appendingPathComponent("passwd"), destination: URL(fileURLWithPath: "/tmp/kit/passwd")
                )))
        #expect(
            copies.contains(
                FileCopy(
                    source: configDirectory.appendingPathComponent("acl"), destination: URL(fileURLWithPath: "/tmp/kit/acl")
                )))
        #expect(
            copies.contains(
                FileCopy(
                    source: certificates.serverKeyFile, destination: URL(fileURLWithPath: "/tmp/kit/certs/server.key")
                )))
    }

    @Test("As root, mosquitto is told to stay root")
    func staysRootWhenRunAsRoot() throws {
        let template = try BrokerConfigurationTemplate(
            text: "listener 1\nlistener 2\nallow_anonymous false\nlistener 3\ncertfile a\n",
            configDirectory: URL(fileURLWithPath: "/repo/broker")
        )
        let (text, _) = template.render(
            ports: [1, 2, 3], host: "127.0.0.1", layout: layout, certificates: certificates, runningAsRoot: true
        )
        #expect(text.components(separatedBy: "\n").contains("user root"))
    }

    @Test("A configuration without a TLS listener is refused with a clear message")
    func refusesMissingListener() throws {
        let error = try #require(throws: MosquittoTestKitError.self) {
            try BrokerConfigurationTemplate(
                text: "listener 1883\nlistener 1884\npassword_file passwd\n",
                configDirectory: URL(fileURLWithPath: "/repo/broker")
            )
        }
        #expect(error.code == .invalidConfiguration)
        #expect(error.message.contains("no tls listener"))
    }
}
