import Foundation
import MosquittoTestKit
import Testing
import Yams

/// docker-compose.yml cannot be run here (no Docker engine), so its shape is checked: it parses, every host path it
/// mounts exists, and the broker runs the repository's broker/ configuration, the same that the tests use.
@Suite("docker-compose.yml")
struct DockerComposeTests {
    /// The repository's root, found from this file (Tests/RepoChecks/DockerComposeTests.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// One bind mount or volume of a service, in the short syntax `source:target[:mode]`.
    struct Mount {
        var source: String
        var target: String
        var readOnly: Bool
        var isHostPath: Bool { source.hasPrefix(".") || source.hasPrefix("/") }
    }

    static func compose() throws -> [String: Any] {
        let text = try String(contentsOf: root.appendingPathComponent("docker-compose.yml"), encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any], "docker-compose.yml is not a mapping")
    }

    static func services() throws -> [String: [String: Any]] {
        let services = try #require(try compose()["services"] as? [String: Any], "no services")
        return services.compactMapValues { $0 as? [String: Any] }
    }

    static func mounts(of service: [String: Any]) -> [Mount] {
        (service["volumes"] as? [Any] ?? []).compactMap { entry in
            guard let text = entry as? String else { return nil }
            let parts = text.split(separator: ":").map(String.init)
            guard parts.count >= 2 else { return nil }
            return Mount(source: parts[0], target: parts[1], readOnly: parts.count > 2 && parts[2] == "ro")
        }
    }

    @Test("it parses, and every service has an image or a build")
    func parses() throws {
        let services = try Self.services()
        #expect(Set(services.keys).isSuperset(of: ["mosquitto", "gateway-primary", "gateway-standby", "sensors"]))
        for (name, service) in services {
            #expect(service["image"] != nil || service["build"] != nil, "service \(name) has neither image nor build")
        }
        let named = Set((try Self.compose()["volumes"] as? [String: Any] ?? [:]).keys)
        for (name, service) in services {
            for mount in Self.mounts(of: service) where !mount.isHostPath {
                #expect(named.contains(mount.source), "service \(name) mounts undeclared volume \(mount.source)")
            }
        }
    }

    @Test("every host path mounted, and the Dockerfile built, exists")
    func mountedPathsExist() throws {
        for (name, service) in try Self.services() {
            for mount in Self.mounts(of: service) where mount.isHostPath {
                let path = Self.root.appendingPathComponent(mount.source).standardizedFileURL.path
                #expect(FileManager.default.fileExists(atPath: path), "service \(name) mounts \(mount.source), missing")
            }
            if let build = service["build"] as? String {
                let dockerfile = Self.root.appendingPathComponent(build).appendingPathComponent("Dockerfile").path
                #expect(FileManager.default.fileExists(atPath: dockerfile), "service \(name) builds from a missing Dockerfile")
            }
        }
    }

    @Test("the broker mounts broker/ (the configuration the tests use) and keeps its store on a volume")
    func brokerConfiguration() throws {
        let mosquitto = try #require(try Self.services()["mosquitto"])
        let mounts = Self.mounts(of: mosquitto)
        let config = try #require(mounts.first { $0.target == "/mosquitto/config" }, "no /mosquitto/config mount")
        let mounted = Self.root.appendingPathComponent(config.source).standardizedFileURL
        #expect(mounted.path == MosquittoBroker.defaultConfigDirectory(environment: [:]).standardizedFileURL.path)
        #expect(config.readOnly)
        let data = try #require(mounts.first { $0.target == "/mosquitto/data" }, "no /mosquitto/data mount")
        #expect(!data.isHostPath, "the store should live on a named volume")

        // Every file the configuration names lies under a mount, and exists in broker/ (certificates: see below).
        let text = try String(contentsOf: mounted.appendingPathComponent("mosquitto.conf"), encoding: .utf8)
        let pathKeys: Set = ["persistence_location", "password_file", "acl_file", "cafile", "certfile", "keyfile"]
        var certificates: [String] = []
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard words.count == 2, pathKeys.contains(words[0]) else { continue }
            let path = words[1]
            #expect(mounts.contains { path.hasPrefix($0.target + "/") }, "\(words[0]) \(path) is not under a mount")
            guard path.hasPrefix("/mosquitto/config/") else { continue }
            let relative = String(path.dropFirst("/mosquitto/config/".count))
            if relative.hasPrefix("certs/") {
                certificates.append(relative)
            } else {
                #expect(FileManager.default.fileExists(atPath: mounted.appendingPathComponent(relative).path), "\(relative) missing")
            }
        }
        // The certificates are generated into broker/certs by the one-shot certs service before the broker starts.
        #expect(!certificates.isEmpty)
        let certs = try #require(try Self.services()["certs"], "no certs service generating the TLS certificates")
        let entrypoint = (certs["entrypoint"] as? [Any] ?? []).compactMap { $0 as? String }
        #expect(entrypoint.contains { $0.hasSuffix("scripts/make-certs.sh") })
        let output = try #require(entrypoint.last)
        let brokerMount = try #require(Self.mounts(of: certs).first { output.hasPrefix($0.target + "/") })
        #expect(Self.root.appendingPathComponent(brokerMount.source).standardizedFileURL.path == mounted.path)
        #expect(output == brokerMount.target + "/certs")
        let dependsOn = mosquitto["depends_on"] as? [String: Any]
        #expect(dependsOn?["certs"] != nil, "the broker must start after the certificates exist")
    }
}
