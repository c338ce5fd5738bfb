import ArgumentParser
import Foundation
import Handoff
import HandoffMQTT
import HandoffRedis
import Logging
import MosquittoClient

/// How every subcommand reaches the broker: the library's connection settings, from flags or, when a flag is not
/// given, from environment variables (so that a shell or a container sets them once).
struct ConnectionOptions: ParsableArguments {
    @Option(
        name: .customLong("broker"),
        help: "Broker URL, mqtt://[user[:password]@]host[:port] or mqtts://… (env HANDOFF_BROKER_URL; default mqtt://127.0.0.1:1883).")
    var brokerURL: String?

    @Option(help: "Topic prefix the participants use (env HANDOFF_PREFIX; default handoff).")
    var prefix: String?

    @Option(help: "User name, instead of the one in the URL (env HANDOFF_USERNAME).")
    var username: String?

    @Option(help: "Password, instead of the one in the URL (env HANDOFF_PASSWORD; prefer the environment to a flag).")
    var password: String?

    @Option(name: .customLong("ca-file"), help: "TLS: PEM file of the certificate authorities to trust (env HANDOFF_CA_FILE; implies TLS).")
    var caFile: String?

    @Option(name: .customLong("cert-file"), help: "TLS: PEM client certificate (env HANDOFF_CERT_FILE).")
    var certificateFile: String?

    @Option(name: .customLong("key-file"), help: "TLS: PEM key of the client certificate (env HANDOFF_KEY_FILE).")
    var keyFile: String?

    @Flag(
        name: .customLong("no-verify-hostname"),
        help: "TLS: do not check that the certificate names the host (tests only; env HANDOFF_NO_VERIFY_HOSTNAME=1).")
    var noVerifyHostname = false

    @Option(
        name: .customLong("keys"),
        help:
            "Key file of the prefix, 'KEYID BASE64SECRET' per line, the first one writing (env HANDOFF_KEYS_FILE; PROTOCOL.md §10): claims and republished handoffs are signed, what is read is verified and decrypted."
    )
    var keysFile: String?

    @Option(
        help:
            "HOST[:PORT] of the Redis claim arbiter the participants use on a clustered broker (env HANDOFF_REDIS; PROTOCOL.md §11): `claim` claims through it, `requeue` and `republish` store the handoff in it first."
    )
    var redis: String?

    @Option(help: "Seconds to wait for the broker, per step (env HANDOFF_TIMEOUT; default 10).")
    var timeout: Double?

    @Flag(name: .shortAndLong, help: "Log the library's messages to standard error.")
    var verbose = false

    /// The variables read when a flag is absent.
    static let environmentNames = [
        "HANDOFF_BROKER_URL", "HANDOFF_PREFIX", "HANDOFF_USERNAME", "HANDOFF_PASSWORD", "HANDOFF_CA_FILE", "HANDOFF_CERT_FILE",
        "HANDOFF_KEY_FILE", "HANDOFF_NO_VERIFY_HOSTNAME", "HANDOFF_TIMEOUT",
    ]

    private static func environment(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }

    /// The broker URL in use.
    var resolvedURL: String { brokerURL ?? Self.environment("HANDOFF_BROKER_URL") ?? "mqtt://127.0.0.1:1883" }

    /// The topic layout in use (a bad prefix is refused with the library's reason).
    func topics() throws -> HandoffTopics {
        try HandoffTopics(prefix: prefix ?? Self.environment("HANDOFF_PREFIX") ?? "handoff")
    }

    /// The key set of `--keys` (or `HANDOFF_KEYS_FILE`), if any.
    func keySet() throws -> HandoffKeySet? {
        guard let path = keysFile ?? Self.environment("HANDOFF_KEYS_FILE") else { return nil }
        do {
            return try HandoffKeySet(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CLIError("\(error)")
        }
    }

    /// `envelope` as a keyed participant reads it: a signed one is published as it is (its payload verbatim); an
    /// unsigned one (a fallback file written before keys were configured) is signed with the writing key. Without keys:
    /// unchanged.
    func signedForPublishing(_ envelope: HandoffEnvelope) throws -> HandoffEnvelope {
        guard let keys = try keySet(), envelope.signature == nil else { return envelope }
        return try keys.seal(envelope)
    }

    /// The Redis claim arbiter of `--redis` (or `HANDOFF_REDIS`), if any.
    func arbiter() throws -> RedisClaimArbiter? {
        guard let endpoint = redis ?? Self.environment("HANDOFF_REDIS") else { return nil }
        let parts = endpoint.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), !parts[0].isEmpty, let port = parts.count == 2 ? Int(parts[1]) : 6379,
            (1...65_535).contains(port)
        else {
            throw CLIError("--redis must be HOST or HOST:PORT, not '\(endpoint)'")
        }
        return RedisClaimArbiter(host: String(parts[0]), port: port, timeout: try stepTimeout())
    }

    /// A library participant of its own for the commands that act as one (`claim`, `republish`), so that they claim and
    /// publish exactly as any participant does: a new instance id, no Will and no liveness lease, a short session.
    func participant(chunkSize: Int? = nil) async throws -> MQTTHandoffTransport {
        var options = MQTTHandoffTransport.Options(
            prefix: try topics().prefix, sessionExpiry: .seconds(60), settleTimeout: .seconds(2), willDelay: nil, livenessLease: nil,
            keys: try keySet(), arbiter: try arbiter()
        )
        if let chunkSize { options.chunkSize = chunkSize }
        return try await MQTTHandoffTransport.connect(
            configuration: try configuration(), options: options, origin: .current(instance: BrokerSession.newInstance()), logger: logger)
    }

    /// Stores a handoff in the claim arbiter before it is published (`requeue`, `republish`), when there is one.
    func storeInArbiter(_ envelope: HandoffEnvelope, payload: Data, prefix: String) async throws {
        try await arbiter()?.store(prefix: prefix, label: envelope.label, id: envelope.id.rawValue, payload: payload)
    }

    /// The per-step time limit.
    func stepTimeout() throws -> Duration {
        let seconds =
            try timeout ?? Self.environment("HANDOFF_TIMEOUT").map { text in
                guard let value = Double(text) else { throw CLIError("HANDOFF_TIMEOUT must be a number of seconds, not '\(text)'") }
                return value
            } ?? 10
        guard seconds > 0, seconds <= 3_600 else { throw CLIError("the timeout must be between 0 and 3600 seconds, not \(seconds)") }
        return .milliseconds(Int(seconds * 1_000))
    }

    /// The client configuration: the URL, then credentials and TLS files from flags or the environment.
    func configuration() throws -> MQTTConfiguration {
        var configuration = try MQTTConfiguration(url: resolvedURL)
        if let username = username ?? Self.environment("HANDOFF_USERNAME") { configuration.username = username }
        if let password = password ?? Self.environment("HANDOFF_PASSWORD") { configuration.password = password }
        let caFile = caFile ?? Self.environment("HANDOFF_CA_FILE")
        let certificateFile = certificateFile ?? Self.environment("HANDOFF_CERT_FILE")
        let keyFile = keyFile ?? Self.environment("HANDOFF_KEY_FILE")
        let noVerify =
            noVerifyHostname || ["1", "true", "yes"].contains(Self.environment("HANDOFF_NO_VERIFY_HOSTNAME")?.lowercased() ?? "")
        if caFile != nil || certificateFile != nil || keyFile != nil || noVerify || configuration.tls != nil {
            for file in [caFile, certificateFile, keyFile].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: file) {
                throw CLIError("cannot read the TLS file '\(file)'")
            }
            configuration.tls = MQTTConfiguration.TLS(
                caFile: caFile, certificateFile: certificateFile, keyFile: keyFile, verifyHostname: !noVerify)
        }
        configuration.protocolVersion = .v5
        let timeout = try stepTimeout()
        configuration.connectTimeout = timeout
        configuration.shutdownTimeout = .seconds(2)
        return configuration
    }

    /// Silent unless `--verbose`: the libraries log through swift-log, and standard output is the tool's.
    var logger: Logger {
        guard verbose else { return Logger(label: "handoff-cli", factory: { _ in SwiftLogNoOpLogHandler() }) }
        var logger = Logger(label: "handoff-cli", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .debug
        return logger
    }
}
