import Foundation

/// A private mosquitto broker for tests, configured from the repository's `broker/mosquitto.conf`.
///
/// Each broker runs in its own temporary folder with its own store, log and copies of the password and ACL files, on
/// free loopback ports (one per listener of the configuration: plain, authenticated, TLS). Its certificates are the
/// process-wide ``TestCertificates``.
///
/// ```swift
/// try await withMosquittoBroker { broker in
///     // connect to broker.plainURL …
///     try await broker.restart()   // same ports, same store
/// }
/// ```
///
/// The broker does not outlive the test process: ``withMosquittoBroker(configDirectory:isolation:_:)`` stops it,
/// `deinit` kills it as a last resort, and a small guard process kills it (and removes its folder) if the test process
/// dies first, even by SIGKILL. Lifecycle methods are not meant to be called concurrently on one broker.
public final class MosquittoBroker: Sendable {
    /// The address every listener binds: `"127.0.0.1"`.
    public let host: String
    /// The port of the plain listener that accepts anonymous clients (1883 in `broker/mosquitto.conf`).
    public let plainPort: Int
    /// The port of the plain listener that requires a user and applies the ACL (1884 in `broker/mosquitto.conf`);
    /// the test users are `handoff`/`handoff-secret` and `restricted`/`restricted-secret`.
    public let authenticatedPort: Int
    /// The port of the TLS listener (8883 in `broker/mosquitto.conf`); clients trust ``certificates``' `caFile`.
    public let tlsPort: Int
    /// The TLS material of the broker and of its clients.
    public let certificates: TestCertificates

    /// `mqtt://127.0.0.1:<plainPort>`.
    public var plainURL: String { "mqtt://\(host):\(plainPort)" }
    /// mosquitto's log file (kept across restarts; each start appends to it).
    public var logFile: URL { layout.logFile }
    /// The folder of mosquitto's store (`mosquitto.db`), kept across ``restart()``, ``stop()`` and ``kill()``.
    public var dataDirectory: URL { layout.dataDirectory }
    /// The broker's private temporary folder: its configuration, log, store and copied files.
    public var directory: URL { layout.root }
    /// The derived configuration file mosquitto runs with.
    public var configurationFile: URL { layout.configFile }

    /// How long ``start()`` waits for every listener to accept connections.
    static let readinessTimeout: Duration = .seconds(10)
    /// How long ``stop()`` waits after SIGTERM before it sends SIGKILL.
    static let gracefulStopTimeout: Duration = .seconds(5)
    /// How many times a start is tried again when a port was taken.
    static let startAttempts = 5

    private let layout: BrokerDirectoryLayout
    private let mosquittoExecutable: URL
    private let state = LockedValue(RunState())

    private struct RunState {
        var process: Process?
        var watchdog: ParentDeathWatchdog?
        var isRemoved = false
    }

    private init(
        layout: BrokerDirectoryLayout,
        ports: (plain: Int, authenticated: Int, tls: Int),
        certificates: TestCertificates,
        mosquittoExecutable: URL
    ) {
        host = POSIX.loopbackAddress
        self.layout = layout
        plainPort = ports.plain
        authenticatedPort = ports.authenticated
        tlsPort = ports.tls
        self.certificates = certificates
        self.mosquittoExecutable = mosquittoExecutable
    }

    deinit {
        // Last resort when the owner never stopped the broker: nobody can use the store any more, so SIGKILL (which
        // writes nothing) rather than SIGTERM (which would save into the folder being removed).
        let (process, watchdog) = state.withLock { ($0.process, $0.watchdog) }
        if let process, process.isRunning {
            POSIX.send(SIGKILL, to: process.processIdentifier)
        }
        watchdog?.stop()
        try? FileManager.default.removeItem(at: layout.root)
    }

    // MARK: Starting

    /// The repository's `broker/` folder: `HANDOFF_BROKER_CONFIG_DIR` when set, else found from this source file's
    /// location (`…/Sources/MosquittoTestKit/MosquittoBroker.swift` → `…/broker`).
    public static func defaultConfigDirectory(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> URL {
        if let override = environment["HANDOFF_BROKER_CONFIG_DIR"], !override.isEmpty {
            return URL(fileURLWithPath: override, isDirectory: true)
        }
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // MosquittoTestKit
            .deletingLastPathComponent()  // Sources
            .deletingLastPathComponent()  // repository
            .appendingPathComponent("broker", isDirectory: true)
    }

    /// A copy of the repository's `broker/` folder (in a new temporary folder; remove it when done) whose
    /// mosquitto.conf saves its store by time (`autosave_interval 1800`, and on a graceful stop) instead of after every
    /// change: for tests of many participants, where a save after each retained message, subscription and queued
    /// message makes the broker slower with every participant (see broker/mosquitto.conf for what it can lose).
    public static func timeSavedConfigDirectory() throws -> URL {
        let source = defaultConfigDirectory()
        let copy = FileManager.default.temporaryDirectory
            .appendingPathComponent("mosquitto-time-saved-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        for name in ["passwd", "acl"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: copy.appendingPathComponent(name))
        }
        let config = try String(contentsOf: source.appendingPathComponent("mosquitto.conf"), encoding: .utf8)
        var replaced = 0
        let lines = config.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            if line.hasPrefix("autosave_on_changes ") {
                replaced += 1
                return "autosave_on_changes false"
            }
            if line.hasPrefix("autosave_interval ") {
                replaced += 1
                return "autosave_interval 1800"
            }
            return String(line)
        }
        guard replaced == 2 else {
            throw MosquittoTestKitError(
                .invalidConfiguration, "broker/mosquitto.conf no longer sets autosave_on_changes and autosave_interval")
        }
        try lines.joined(separator: "\n").write(to: copy.appendingPathComponent("mosquitto.conf"), atomically: true, encoding: .utf8)
        return copy
    }

    /// A copy of the repository's `broker/` folder (in a new temporary folder; remove it when done) whose mosquitto.conf
    /// ends with `lines`: global options for one test's broker, such as `max_packet_size 1048576`.
    public static func configDirectory(appending lines: [String]) throws -> URL {
        let source = defaultConfigDirectory()
        let copy = FileManager.default.temporaryDirectory
            .appendingPathComponent("mosquitto-custom-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        for name in ["passwd", "acl"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: copy.appendingPathComponent(name))
        }
        let config = try String(contentsOf: source.appendingPathComponent("mosquitto.conf"), encoding: .utf8)
        let added = (["", "# Added for this broker."] + lines + [""]).joined(separator: "\n")
        try (config + added).write(to: copy.appendingPathComponent("mosquitto.conf"), atomically: true, encoding: .utf8)
        return copy
    }

    /// Starts a private broker and returns once every listener accepts connections.
    ///
    /// - Parameter configDirectory: the folder holding `mosquitto.conf`, `passwd` and `acl`; by default
    ///   ``defaultConfigDirectory(environment:)``.
    /// - Throws: ``MosquittoTestKitError`` when `mosquitto` or `openssl` is not installed (the message says how to
    ///   install it), when the configuration cannot be read, or when mosquitto does not start (the message holds the
    ///   tail of its log).
    public static func start(configDirectory: URL? = nil) async throws -> MosquittoBroker {
        let mosquitto = try ExternalProgram.mosquitto.locate()
        let template = try BrokerConfigurationTemplate(configDirectory: configDirectory ?? defaultConfigDirectory())
        let certificates = try await TestCertificates.shared()

        var lastFailure: MosquittoTestKitError?
        for _ in 1...startAttempts {
            let ports = try POSIX.freeLoopbackPorts(count: template.listeners.count)
            let broker = try prepare(template: template, ports: ports, certificates: certificates, mosquitto: mosquitto)
            do {
                try await broker.launch()
                return broker
            } catch let failure as LaunchFailure where failure.portWasTaken {
                // Someone took a port between our check and mosquitto's bind: try again on new ports.
                lastFailure = failure.error
                await broker.shutDownAndRemove()
            } catch let failure as LaunchFailure {
                await broker.shutDownAndRemove()
                throw failure.error
            } catch {
                await broker.shutDownAndRemove()
                throw error
            }
        }
        throw lastFailure ?? MosquittoTestKitError(.brokerDidNotStart, "mosquitto did not start.")
    }

    /// Creates the private folder and writes the derived configuration into it.
    private static func prepare(
        template: BrokerConfigurationTemplate,
        ports: [Int],
        certificates: TestCertificates,
        mosquitto: URL
    ) throws -> MosquittoBroker {
        let fileManager = FileManager.default
        let layout = BrokerDirectoryLayout(
            root: fileManager.temporaryDirectory.appendingPathComponent("mosquitto-test-\(UUID().uuidString)")
        )
        try fileManager.createDirectory(
            at: layout.root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]
        )
        let broker = MosquittoBroker(
            layout: layout,
            ports: (
                ports[template.listenerIndex(of: .plain)],
                ports[template.listenerIndex(of: .authenticated)],
                ports[template.listenerIndex(of: .tls)]
            ),
            certificates: certificates,
            mosquittoExecutable: mosquitto
        )
        // From here on, the broker's deinit removes the folder if anything below fails.
        try fileManager.createDirectory(at: layout.dataDirectory, withIntermediateDirectories: true)
        try fileManager.createDirectory(at: layout.certificatesDirectory, withIntermediateDirectories: true)
        let (text, copies) = template.render(
            ports: ports,
            host: POSIX.loopbackAddress,
            layout: layout,
            certificates: certificates,
            runningAsRoot: POSIX.isRoot
        )
        for copy in copies {
            do {
                try fileManager.copyItem(at: copy.source, to: copy.destination)
            } catch {
                throw MosquittoTestKitError(
                    .invalidConfiguration,
                    "Cannot copy \(copy.source.path), named by \(template.configDirectory.path)/mosquitto.conf: \(error)"
                )
            }
        }
        try text.write(to: layout.configFile, atomically: true, encoding: .utf8)
        return broker
    }

    /// Starts mosquitto again after ``stop()`` or ``kill()``, on the same ports and with the same store, and returns
    /// once every listener accepts connections. Does nothing when the broker is running.
    ///
    /// - Throws: ``MosquittoTestKitError`` when mosquitto does not start within 10 seconds (for instance because
    ///   another program took one of its ports meanwhile); the message holds the tail of its log.
    public func start() async throws {
        var lastFailure: MosquittoTestKitError?
        for attempt in 1...Self.startAttempts {
            do {
                try await launch()
                return
            } catch let failure as LaunchFailure where failure.portWasTaken {
                // The port may be released soon (another broker of this process still stopping, say): wait a little.
                lastFailure = failure.error
                if attempt < Self.startAttempts { try await Task.sleep(for: .milliseconds(200 * attempt)) }
            } catch let failure as LaunchFailure {
                throw failure.error
            }
        }
        throw lastFailure ?? MosquittoTestKitError(.brokerDidNotStart, "mosquitto did not start.")
    }

    /// Why mosquitto did not start, and whether new ports could help.
    private struct LaunchFailure: Error {
        var error: MosquittoTestKitError
        var portWasTaken: Bool
    }

    /// Runs mosquitto and waits until it is ready. Throws ``LaunchFailure``.
    private func launch() async throws {
        let previous = state.withLock { state -> (removed: Bool, process: Process?) in (state.isRemoved, state.process) }
        if previous.removed {
            throw LaunchFailure(
                error: MosquittoTestKitError(.brokerRemoved, "This broker was shut down and its folder removed."),
                portWasTaken: false
            )
        }
        if let process = previous.process {
            if process.isRunning { return }
            finishRun(of: process)  // it exited on its own: release its guard
        }

        let logOffset = fileSize(layout.logFile)
        let fileManager = FileManager.default
        guard fileManager.createFile(atPath: layout.standardErrorFile.path, contents: nil) else {
            throw LaunchFailure(
                error: MosquittoTestKitError(.brokerDidNotStart, "Cannot create \(layout.standardErrorFile.path)."),
                portWasTaken: false
            )
        }
        let standardError: FileHandle
        do {
            standardError = try FileHandle(forWritingTo: layout.standardErrorFile)
        } catch {
            throw LaunchFailure(
                error: MosquittoTestKitError(.brokerDidNotStart, "Cannot open \(layout.standardErrorFile.path): \(error)"),
                portWasTaken: false
            )
        }
        defer { try? standardError.close() }

        let process = Process()
        process.executableURL = mosquittoExecutable
        process.arguments = ["-c", layout.configFile.path]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice  // the same lines as the log file
        process.standardError = standardError
        do {
            try await POSIX.runWithEmptySignalMask(process)
        } catch {
            throw LaunchFailure(
                error: MosquittoTestKitError(.brokerDidNotStart, "Could not run \(mosquittoExecutable.path): \(error)"),
                portWasTaken: false
            )
        }
        let watchdog: ParentDeathWatchdog
        do {
            watchdog = try ParentDeathWatchdog(guarding: process.processIdentifier, removingOnParentDeath: layout.root)
        } catch {
            POSIX.send(SIGKILL, to: process.processIdentifier)
            _ = await waitForExit(of: process, timeout: Self.gracefulStopTimeout)
            throw LaunchFailure(error: error as? MosquittoTestKitError ?? .init(.brokerDidNotStart, "\(error)"), portWasTaken: false)
        }
        state.withLock {
            $0.process = process
            $0.watchdog = watchdog
        }

        let ports = [plainPort, authenticatedPort, tlsPort]
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: Self.readinessTimeout)
        while true {
            if !process.isRunning {
                finishRun(of: process)
                let newLog = logText(from: logOffset)
                let reason =
                    process.terminationReason == .exit
                    ? "exited with status \(process.terminationStatus)"
                    : "was killed by signal \(process.terminationStatus)"
                throw LaunchFailure(
                    error: startFailure("mosquitto \(reason) while starting.", newLog: newLog),
                    portWasTaken: newLog.contains("Address already in use")
                )
            }
            // mosquitto logs "running" once all its listeners are open; the connections prove they are ours and up.
            if logText(from: logOffset).contains(" running"), ports.allSatisfy(POSIX.acceptsConnections(port:)) {
                return
            }
            if clock.now >= deadline {
                POSIX.send(SIGKILL, to: process.processIdentifier)
                _ = await waitForExit(of: process, timeout: Self.gracefulStopTimeout)
                finishRun(of: process)
                throw LaunchFailure(
                    error: startFailure(
                        "mosquitto did not accept connections on ports \(ports.map(String.init).joined(separator: ", ")) "
                            + "within \(Self.readinessTimeout).",
                        newLog: logText(from: logOffset)
                    ),
                    portWasTaken: false
                )
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    private func startFailure(_ what: String, newLog: String) -> MosquittoTestKitError {
        let standardError = (try? String(contentsOf: layout.standardErrorFile, encoding: .utf8)) ?? ""
        let logTail = newLog.split(separator: "\n", omittingEmptySubsequences: false).suffix(30).joined(separator: "\n")
        return MosquittoTestKitError(
            .brokerDidNotStart,
            """
            \(what)
            Configuration: \(layout.configFile.path)
            mosquitto's standard error:
            \(standardError.isEmpty ? "(empty)" : standardError)
            Tail of mosquitto's log \(layout.logFile.path):
            \(logTail.isEmpty ? "(empty)" : logTail)
            """
        )
    }

    // MARK: Stopping

    /// Stops mosquitto gracefully: SIGTERM (mosquitto then saves its store), and SIGKILL if it has not exited after
    /// 5 seconds. Returns once it has exited. The ports and the store are kept for ``start()``.
    public func stop() async {
        guard let process = state.withLock({ $0.process }) else { return }
        if process.isRunning {
            process.terminate()
            if await !waitForExit(of: process, timeout: Self.gracefulStopTimeout) {
                POSIX.send(SIGKILL, to: process.processIdentifier)
                _ = await waitForExit(of: process, timeout: Self.gracefulStopTimeout)
            }
        }
        finishRun(of: process)
    }

    /// Kills mosquitto with SIGKILL, as a crash would: it saves nothing on the way out, so the store holds what its
    /// last autosave wrote. Returns once it has exited. The ports and the store are kept for ``start()``.
    public func kill() async {
        guard let process = state.withLock({ $0.process }) else { return }
        if process.isRunning {
            POSIX.send(SIGKILL, to: process.processIdentifier)
            _ = await waitForExit(of: process, timeout: Self.gracefulStopTimeout)
        }
        finishRun(of: process)
    }

    /// Stops mosquitto gracefully (``stop()``) and starts it again (``start()``) on the same ports with the same store.
    public func restart() async throws {
        await stop()
        try await start()
    }

    /// Stops mosquitto and removes the private folder; the broker cannot be started again.
    func shutDownAndRemove() async {
        await stop()
        state.withLock { $0.isRemoved = true }
        try? FileManager.default.removeItem(at: layout.root)
    }

    /// Forgets an exited mosquitto process and stops its guard.
    private func finishRun(of process: Process) {
        let watchdog = state.withLock { state -> ParentDeathWatchdog? in
            guard state.process === process else { return nil }
            let watchdog = state.watchdog
            state.process = nil
            state.watchdog = nil
            return watchdog
        }
        watchdog?.stop()
    }

    // MARK: Log

    /// The last `lines` lines of mosquitto's log (fewer when the log is shorter; empty when there is none yet).
    public func logTail(lines: Int) -> String {
        guard lines > 0, let text = try? String(contentsOf: layout.logFile, encoding: .utf8) else { return "" }
        var logLines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if logLines.last == "" { logLines.removeLast() }
        return logLines.suffix(lines).joined(separator: "\n")
    }

    private func fileSize(_ file: URL) -> UInt64 {
        let attributes = try? FileManager.default.attributesOfItem(atPath: file.path)
        return (attributes?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    /// The log written since byte `offset`.
    private func logText(from offset: UInt64) -> String {
        guard let handle = try? FileHandle(forReadingFrom: layout.logFile) else { return "" }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: offset)) != nil, let data = try? handle.readToEnd() else { return "" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Starts a private broker (``MosquittoBroker/start(configDirectory:)``), runs `body` with it, then always stops it
/// and removes its temporary folder, whether `body` returned or threw.
///
/// - Parameters:
///   - configDirectory: the folder holding `mosquitto.conf`, `passwd` and `acl`; by default the repository's
///     `broker/` (or `HANDOFF_BROKER_CONFIG_DIR`).
///   - body: the test; it may stop, kill and restart the broker.
/// - Returns: what `body` returned.
public func withMosquittoBroker<Result>(
    configDirectory: URL? = nil,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (MosquittoBroker) async throws -> Result
) async throws -> Result {
    let broker = try await MosquittoBroker.start(configDirectory: configDirectory)
    do {
        let result = try await body(broker)
        await broker.shutDownAndRemove()
        return result
    } catch {
        await broker.shutDownAndRemove()
        throw error
    }
}
