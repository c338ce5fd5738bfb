import Foundation

/// What a listener of the broker configuration is for, told by the options that follow its `listener` line.
enum ListenerRole: String, Sendable, Hashable, CaseIterable {
    /// No credentials asked.
    case plain
    /// Users and passwords (and an ACL): `allow_anonymous false`, `password_file`, `acl_file` or a plugin.
    case authenticated
    /// TLS: `cafile`, `certfile` or `keyfile`.
    case tls
}

/// The files of one private broker, all inside one folder.
struct BrokerDirectoryLayout: Sendable, Hashable {
    let root: URL
    var configFile: URL { root.appendingPathComponent("mosquitto.conf") }
    var logFile: URL { root.appendingPathComponent("mosquitto.log") }
    /// mosquitto's standard error: the messages it prints before its log is open (configuration errors).
    var standardErrorFile: URL { root.appendingPathComponent("mosquitto.stderr") }
    var dataDirectory: URL { root.appendingPathComponent("data", isDirectory: true) }
    var certificatesDirectory: URL { root.appendingPathComponent("certs", isDirectory: true) }
}

/// A file the derived configuration refers to, to be copied into the broker's folder.
struct FileCopy: Sendable, Hashable {
    var source: URL
    var destination: URL
}

/// `broker/mosquitto.conf`, read line by line, from which each private broker's configuration is derived.
///
/// Every line is kept, except that:
/// - `listener <port> [address]` becomes `listener <free port> 127.0.0.1`;
/// - the paths of `persistence_location`, `password_file`, `acl_file`, `cafile`, `certfile` and `keyfile` move into
///   the broker's own folder (the password and ACL files are copied there, the certificates are the generated
///   ``TestCertificates``);
/// - when the process runs as root, `user` lines become `user root` (mosquitto started as root otherwise switches to
///   the `mosquitto` user, which cannot read the private folder).
///
/// Then `log_dest file <folder>/mosquitto.log` is added, and `log_type notice` when the configured log types would
/// leave out the "running" notice that tells the kit the broker is ready.
struct BrokerConfigurationTemplate: Sendable {
    /// One `listener` line.
    struct Listener: Sendable, Hashable {
        /// The port written in the template.
        var configuredPort: Int
        var role: ListenerRole
    }

    /// The folder the template was read from; relative paths and `/mosquitto/config/…` paths resolve against it.
    let configDirectory: URL
    let lines: [String]
    /// The listeners, in the order of their lines.
    let listeners: [Listener]

    /// The docker-compose layout the committed configuration is written for.
    static let dockerConfigPrefix = "/mosquitto/config/"

    /// Reads `mosquitto.conf` from `configDirectory`.
    init(configDirectory: URL) throws {
        let file = configDirectory.appendingPathComponent("mosquitto.conf")
        let text: String
        do {
            text = try String(contentsOf: file, encoding: .utf8)
        } catch {
            throw MosquittoTestKitError(
                .invalidConfiguration,
                "Cannot read the broker configuration \(file.path): \(error). Point the environment variable "
                    + "HANDOFF_BROKER_CONFIG_DIR at the repository's broker/ folder."
            )
        }
        try self.init(text: text, configDirectory: configDirectory)
    }

    init(text: String, configDirectory: URL) throws {
        self.configDirectory = configDirectory
        lines = text.components(separatedBy: "\n").map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
        var listeners: [Listener] = []
        for line in lines {
            guard let (key, value) = Self.directive(in: line) else { continue }
            if key == "listener" {
                let portText = value.split(separator: " ", omittingEmptySubsequences: true).first.map(String.init)
                guard let portText, let port = Int(portText), port > 0 else {
                    throw MosquittoTestKitError(
                        .invalidConfiguration,
                        "Unsupported listener line in \(configDirectory.path)/mosquitto.conf: `\(line)` "
                            + "(the kit needs `listener <port>`)."
                    )
                }
                listeners.append(Listener(configuredPort: port, role: .plain))
                continue
            }
            guard let current = listeners.indices.last else { continue }
            switch key {
            case "cafile", "capath", "certfile", "keyfile":
                listeners[current].role = .tls
            case "password_file", "acl_file", "auth_plugin", "plugin":
                if listeners[current].role != .tls { listeners[current].role = .authenticated }
            case "allow_anonymous" where value == "false":
                if listeners[current].role != .tls { listeners[current].role = .authenticated }
            default:
                break
            }
        }
        let missing = ListenerRole.allCases.filter { role in !listeners.contains { $0.role == role } }
        guard missing.isEmpty else {
            throw MosquittoTestKitError(
                .invalidConfiguration,
                "\(configDirectory.path)/mosquitto.conf has no \(missing.map(\.rawValue).joined(separator: ", ")) "
                    + "listener; the kit needs a plain, an authenticated (password_file) and a TLS (certfile) one."
            )
        }
        self.listeners = listeners
    }

    /// The index of the first listener with `role`.
    func listenerIndex(of role: ListenerRole) -> Int {
        // The initializer guarantees one of each role.
        listeners.firstIndex { $0.role == role } ?? 0
    }

    /// The option name and its value, or nil for blank and comment lines.
    static func directive(in line: String) -> (key: String, value: String)? {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { return nil }
        guard let space = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" }) else { return (trimmed, "") }
        return (String(trimmed[..<space]), trimmed[space...].trimmingCharacters(in: .whitespaces))
    }

    /// The file a path of the template names: `/mosquitto/config/x` and relative paths are in ``configDirectory``.
    func sourceFile(for path: String) -> URL {
        if path.hasPrefix(Self.dockerConfigPrefix) {
            return configDirectory.appendingPathComponent(String(path.dropFirst(Self.dockerConfigPrefix.count)))
        }
        if path.hasPrefix("/") { return URL(fileURLWithPath: path) }
        return configDirectory.appendingPathComponent(path)
    }

    /// The configuration text of one broker, and the files to copy into its folder.
    ///
    /// - Parameters:
    ///   - ports: one port per listener, in the order of ``listeners``.
    ///   - host: the address every listener binds.
    ///   - layout: the broker's folder.
    ///   - certificates: the TLS files to use for `cafile`, `certfile` and `keyfile`.
    ///   - runningAsRoot: whether mosquitto is started by root.
    func render(
        ports: [Int],
        host: String,
        layout: BrokerDirectoryLayout,
        certificates: TestCertificates,
        runningAsRoot: Bool
    ) -> (text: String, copies: [FileCopy]) {
        precondition(ports.count == listeners.count, "one port per listener")
        var output: [String] = []
        var copies: [FileCopy] = []
        var listenerNumber = 0
        var hasUserLine = false
        var logTypes: [String] = []

        func copied(_ source: URL, into folder: URL, as path: String) -> String {
            let name = (path as NSString).lastPathComponent
            let destination = folder.appendingPathComponent(name)
            let copy = FileCopy(source: source, destination: destination)
            if !copies.contains(copy) { copies.append(copy) }
            return destination.path
        }

        for line in lines {
            guard let (key, value) = Self.directive(in: line) else {
                output.append(line)
                continue
            }
            switch key {
            case "listener":
                output.append("listener \(ports[listenerNumber]) \(host)")
                listenerNumber += 1
            case "persistence_location":
                output.append("persistence_location \(layout.dataDirectory.path)/")
            case "password_file", "acl_file":
                output.append("\(key) \(copied(sourceFile(for: value), into: layout.root, as: value))")
            case "cafile":
                output.append("cafile \(copied(certificates.caFile, into: layout.certificatesDirectory, as: value))")
            case "certfile":
                let path = copied(certificates.serverCertificateFile, into: layout.certificatesDirectory, as: value)
                output.append("certfile \(path)")
            case "keyfile":
                output.append("keyfile \(copied(certificates.serverKeyFile, into: layout.certificatesDirectory, as: value))")
            case "user":
                hasUserLine = true
                output.append(runningAsRoot ? "user root" : line)
            case "log_type":
                logTypes.append(contentsOf: value.split(separator: " ").map(String.init))
                output.append(line)
            default:
                output.append(line)
            }
        }

        output.append("")
        output.append("# Added by MosquittoTestKit.")
        output.append("log_dest file \(layout.logFile.path)")
        if !logTypes.isEmpty, !logTypes.contains("notice"), !logTypes.contains("all") {
            output.append("log_type notice")
        }
        if runningAsRoot, !hasUserLine {
            output.append("user root")
        }
        output.append("")
        return (output.joined(separator: "\n"), copies)
    }
}
