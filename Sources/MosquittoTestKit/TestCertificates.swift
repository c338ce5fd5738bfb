import Foundation

/// TLS material for tests, generated with the `openssl` command line tool: a test certificate authority, a server
/// certificate it signed (CN=localhost, subjectAltName DNS:localhost and IP:127.0.0.1), a client certificate it
/// signed, and an unrelated "wrong" authority that must be refused.
///
/// Keys are EC P-256 PEM files without a passphrase. Everything here is for tests only.
public struct TestCertificates: Sendable, Hashable {
    /// The folder that holds the files.
    public let directory: URL
    /// The test certificate authority's certificate (PEM): what clients trust to reach the broker's TLS listener.
    public let caFile: URL
    /// The test certificate authority's private key (PEM).
    public let caKeyFile: URL
    /// The broker's certificate (PEM), signed by ``caFile``, valid for `localhost` and `127.0.0.1`.
    public let serverCertificateFile: URL
    /// The broker's private key (PEM).
    public let serverKeyFile: URL
    /// A client certificate (PEM) signed by ``caFile``, for listeners that ask for one.
    public let clientCertificateFile: URL
    /// The client certificate's private key (PEM).
    public let clientKeyFile: URL
    /// The certificate (PEM) of an authority unrelated to the broker's: trusting only it must fail the handshake.
    public let wrongCAFile: URL

    /// The names of the files in ``directory``, the same as those `scripts/make-certs.sh` writes.
    init(directory: URL) {
        self.directory = directory
        caFile = directory.appendingPathComponent("ca.crt")
        caKeyFile = directory.appendingPathComponent("ca.key")
        serverCertificateFile = directory.appendingPathComponent("server.crt")
        serverKeyFile = directory.appendingPathComponent("server.key")
        clientCertificateFile = directory.appendingPathComponent("client.crt")
        clientKeyFile = directory.appendingPathComponent("client.key")
        wrongCAFile = directory.appendingPathComponent("wrong-ca.crt")
    }

    /// The certificates of this process: generated on first use into a private temporary folder, then reused by
    /// every broker (generation takes a few hundred milliseconds). The folder is removed when the process exits.
    public static func shared() async throws -> TestCertificates {
        try await sharedGeneration.value
    }

    /// Runs once per process, on first access; a failure (such as a missing `openssl`) is kept and rethrown.
    private static let sharedGeneration = Task<TestCertificates, any Error> {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mosquitto-test-certificates-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString)")
        sharedDirectoryToRemove.withLock { $0 = directory }
        atexit {
            if let directory = TestCertificates.sharedDirectoryToRemove.withLock({ $0 }) {
                try? FileManager.default.removeItem(at: directory)
            }
        }
        return try await generate(in: directory)
    }

    private static let sharedDirectoryToRemove = LockedValue<URL?>(nil)

    /// Generates a fresh set of certificates into `directory` (created if needed).
    public static func generate(in directory: URL) async throws -> TestCertificates {
        let openssl = try ExternalProgram.openssl.locate()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificates = TestCertificates(directory: directory)
        let generator = CertificateGenerator(openssl: openssl, directory: directory)

        try await generator.makeAuthority(prefix: "ca", commonName: "swift-handoff test CA")
        try await generator.makeSignedCertificate(
            prefix: "server",
            commonName: "localhost",
            extensions: [
                "basicConstraints = CA:FALSE",
                "keyUsage = critical, digitalSignature, keyEncipherment",
                "extendedKeyUsage = serverAuth",
                "subjectAltName = DNS:localhost, IP:127.0.0.1",
            ]
        )
        try await generator.makeSignedCertificate(
            prefix: "client",
            commonName: "swift-handoff test client",
            extensions: [
                "basicConstraints = CA:FALSE",
                "keyUsage = critical, digitalSignature, keyEncipherment",
                "extendedKeyUsage = clientAuth",
            ]
        )
        try await generator.makeAuthority(prefix: "wrong-ca", commonName: "swift-handoff WRONG test CA")
        try generator.removeWorkFiles()
        return certificates
    }
}

/// The `openssl` invocations behind ``TestCertificates`` (the same as `scripts/make-certs.sh`).
private struct CertificateGenerator {
    let openssl: URL
    let directory: URL

    private func file(_ name: String) -> String { directory.appendingPathComponent(name).path }

    private func run(_ arguments: [String]) async throws {
        let result = try await runCommand(openssl, arguments)
        guard result.succeeded else {
            throw MosquittoTestKitError(
                .commandFailed,
                "openssl \(arguments.joined(separator: " ")) failed (status \(result.status)):\n\(result.output)"
            )
        }
    }

    private func write(_ text: String, to name: String) throws {
        try text.write(toFile: file(name), atomically: true, encoding: .utf8)
    }

    private func makeKey(_ name: String) async throws {
        try await run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file(name)])
    }

    /// A self-signed certificate authority: `<prefix>.crt` and `<prefix>.key`.
    func makeAuthority(prefix: String, commonName: String) async throws {
        try await makeKey("\(prefix).key")
        try write(
            """
            [req]
            distinguished_name = dn
            prompt = no
            [dn]
            CN = \(commonName)
            [v3_ca]
            basicConstraints = critical, CA:TRUE
            keyUsage = critical, keyCertSign, cRLSign
            subjectKeyIdentifier = hash

            """,
            to: "\(prefix).cnf"
        )
        try await run([
            "req", "-x509", "-new", "-config", file("\(prefix).cnf"), "-extensions", "v3_ca",
            "-key", file("\(prefix).key"), "-days", "3650", "-out", file("\(prefix).crt"),
        ])
    }

    /// A certificate signed by `ca.crt`: `<prefix>.crt` and `<prefix>.key`.
    func makeSignedCertificate(prefix: String, commonName: String, extensions: [String]) async throws {
        try await makeKey("\(prefix).key")
        try write("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = \(commonName)\n", to: "\(prefix).cnf")
        try write(extensions.joined(separator: "\n") + "\n", to: "\(prefix).ext")
        try await run([
            "req", "-new", "-config", file("\(prefix).cnf"), "-key", file("\(prefix).key"),
            "-out", file("\(prefix).csr"),
        ])
        let serial = "0x" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await run([
            "x509", "-req", "-in", file("\(prefix).csr"), "-CA", file("ca.crt"), "-CAkey", file("ca.key"),
            "-set_serial", serial, "-days", "825", "-extfile", file("\(prefix).ext"), "-out", file("\(prefix).crt"),
        ])
    }

    /// Removes the request configurations and signing requests, keeping certificates and keys.
    func removeWorkFiles() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        for name in names where name.hasSuffix(".cnf") || name.hasSuffix(".ext") || name.hasSuffix(".csr") {
            try FileManager.default.removeItem(atPath: file(name))
        }
    }
}
