import Foundation
import MosquittoTestKit

/// A private cluster of ejabberd nodes on loopback, each with an MQTT listener (mod_mqtt, MQTT 3.1.1 and 5), for tests of
/// what a clustered broker does to handoffs (issue 14).
///
/// Each cluster runs in its own temporary folder (configuration, Mnesia spool, logs and Erlang cookie of every node) with
/// its own epmd on a free port, so that clusters of parallel test runs never see each other; the nodes are distinct Erlang
/// nodes (`handoff-a-<random>@localhost`, `handoff-b-<random>@localhost`, …) sharing the cluster's cookie, whose
/// distribution listens on 127.0.0.1 only. Every node after the first joins the first one's cluster
/// (`ejabberd_ctl join_cluster`), and ``start(nodes:timeout:)`` returns once every node runs and the first one lists them
/// all.
///
/// ```swift
/// try await withEjabberdCluster { cluster in
///     let a = cluster.nodes[0], b = cluster.nodes[1]
///     // connect to a.host:a.mqttPort and b.host:b.mqttPort with username/password
///     // EjabberdCluster.username / EjabberdCluster.password
/// }
/// ```
///
/// mod_mqtt accepts no client without a user name and a password (with an empty password it expects a TLS client
/// certificate, and refuses with `not-authorized` otherwise): the nodes use anonymous authentication, which accepts any
/// name and any non-empty password. Give clients ``username`` and ``password``.
///
/// The nodes do not outlive the test process: ``withEjabberdCluster(nodes:timeout:isolation:_:)`` stops them, `deinit`
/// kills them as a last resort, and a guard process per node (and one for epmd) kills them and removes the folder if the
/// test process dies first, even by SIGKILL.
public final class EjabberdCluster: Sendable {
    /// One ejabberd node of the cluster.
    public struct Node: Sendable, Hashable, CustomStringConvertible {
        /// Its position in ``EjabberdCluster/nodes`` (0 is the node the others joined).
        public let index: Int
        /// Its Erlang node name, `handoff-<letter>-<random>@localhost`.
        public let name: String
        /// The address its MQTT listener binds: `"127.0.0.1"`.
        public let host: String
        /// The port of its MQTT listener (mod_mqtt), a free loopback port chosen at start.
        public let mqttPort: Int
        /// Its private folder: `ejabberd.yml`, `spool/` (Mnesia), `log/`.
        public let directory: URL

        /// ejabberd's log (`log/ejabberd.log`).
        public var logFile: URL { directory.appendingPathComponent("log/ejabberd.log") }
        /// What the node printed on its standard output and error (early configuration errors appear only here).
        public var consoleFile: URL { directory.appendingPathComponent("log/console.log") }
        /// Its `ejabberd.yml`.
        public var configurationFile: URL { directory.appendingPathComponent("ejabberd.yml") }
        /// `mqtt://handoff:anonymous@127.0.0.1:<mqttPort>`: a URL for `MQTTConfiguration(url:)`, with the credentials.
        public var url: String { "mqtt://\(EjabberdCluster.username):\(EjabberdCluster.password)@\(host):\(mqttPort)" }

        public var description: String { "\(name) (MQTT \(host):\(mqttPort))" }
    }

    /// The user name MQTT clients give (any name is accepted; it becomes the JID `handoff@localhost/<client id>`).
    public static let username = "handoff"
    /// The password MQTT clients give: anonymous login accepts any, but it must not be empty.
    public static let password = "anonymous"
    /// The largest PUBLISH payload the listeners accept (mod_mqtt's `max_payload_size`; MQTT's own limit).
    public static let maximumPayloadSize = 268_435_455
    /// The session expiry the nodes allow at most (mod_mqtt's `session_expiry`): a client asking for more gets this.
    public static let maximumSessionExpiry = 86_400

    /// The nodes, in the order they were started and joined.
    public let nodes: [Node]
    /// The cluster's private temporary folder: the cookie, epmd's log, and every node's folder.
    public let directory: URL
    /// The port of the cluster's private epmd (`ERL_EPMD_PORT` of its nodes).
    public let epmdPort: Int
    /// The ejabberd version running (`23.01-1` on Debian 12).
    public let ejabberdVersion: String
    /// How long ``start(nodes:timeout:)`` took, from nothing to a formed cluster accepting MQTT connections.
    public var startupDuration: Duration { state.withLock { $0.startupDuration } }

    /// How long each node gets to start, and the cluster to form, when ``start(nodes:timeout:)`` is given nothing else.
    public static let defaultTimeout: Duration = .seconds(60)
    /// How long ``stop()`` waits after SIGTERM before it sends SIGKILL.
    static let gracefulStopTimeout: Duration = .seconds(5)
    /// How long one `ejabberd_ctl` command may take.
    static let commandTimeout: Duration = .seconds(30)
    /// How many times a start is tried again on new ports when a port was taken.
    static let startAttempts = 3

    private let installation: EjabberdInstallation
    private let state: LockedValue<RunState>

    private struct RunState {
        var epmd: GuardedChild?
        var nodes: [GuardedChild?]
        var isRemoved = false
        var startupDuration: Duration = .zero
    }

    private init(
        nodes: [Node], directory: URL, epmdPort: Int, installation: EjabberdInstallation, epmd: GuardedChild,
        processes: [GuardedChild]
    ) {
        self.nodes = nodes
        self.directory = directory
        self.epmdPort = epmdPort
        self.installation = installation
        ejabberdVersion = installation.version
        state = LockedValue(RunState(epmd: epmd, nodes: processes))
    }

    deinit {
        // Last resort when the owner never stopped the cluster.
        let children = state.withLock { state in state.nodes.compactMap { $0 } + [state.epmd].compactMap { $0 } }
        for child in children { child.killNow() }
        try? FileManager.default.removeItem(at: directory)
    }

    // MARK: Starting

    /// Starts `nodes` ejabberd nodes, joins every node after the first to the first one's cluster, and returns once
    /// every node runs, accepts MQTT connections, and the first node lists them all.
    ///
    /// - Parameters:
    ///   - nodes: how many nodes (at least 1).
    ///   - timeout: how long each stage (the nodes' start, each join, the cluster's forming) may take.
    /// - Throws: ``ClusterTestKitError`` when ejabberd is not installed (the message says how to install it), or when a
    ///   node does not start or join in time (the message holds the tail of its logs).
    public static func start(nodes count: Int = 2, timeout: Duration = defaultTimeout) async throws -> EjabberdCluster {
        precondition(count >= 1, "a cluster needs at least one node")
        let installation = try EjabberdInstallation.locate()
        let clock = ContinuousClock()
        let began = clock.now
        var lastFailure: ClusterTestKitError?
        for _ in 1...startAttempts {
            do {
                return try await launch(count: count, installation: installation, timeout: timeout, began: began)
            } catch let failure as LaunchFailure where failure.portWasTaken {
                lastFailure = failure.error  // someone took a port between our check and the bind: new ports
            } catch let failure as LaunchFailure {
                throw failure.error
            }
        }
        throw lastFailure ?? ClusterTestKitError(.nodeDidNotStart, "The ejabberd cluster did not start.")
    }

    /// Why a start failed, and whether new ports could help.
    private struct LaunchFailure: Error {
        var error: ClusterTestKitError
        var portWasTaken = false
    }

    /// One attempt: a new folder, new ports, new names. Cleans up after itself when it fails.
    private static func launch(
        count: Int, installation: EjabberdInstallation, timeout: Duration, began: ContinuousClock.Instant
    ) async throws -> EjabberdCluster {
        let fileManager = FileManager.default
        let suffix = randomToken(length: 6)
        let root = fileManager.temporaryDirectory.appendingPathComponent("ejabberd-cluster-\(suffix)-\(UUID().uuidString.prefix(8))")
        var epmd: GuardedChild?
        var children: [GuardedChild] = []
        func cleanUp() async {
            for child in children { await child.kill() }
            await epmd?.kill()
            try? fileManager.removeItem(at: root)
        }
        do {
            try fileManager.createDirectory(at: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            // The cookie: the nodes and the ejabberd_ctl commands all run with HOME set to the cluster's folder.
            let cookie = randomToken(length: 20).uppercased()
            let cookieFile = root.appendingPathComponent(".erlang.cookie")
            guard fileManager.createFile(atPath: cookieFile.path, contents: Data(cookie.utf8), attributes: [.posixPermissions: 0o400])
            else {
                throw LaunchFailure(error: ClusterTestKitError(.nodeDidNotStart, "Cannot write \(cookieFile.path)."))
            }
            let ports = try POSIX.freeLoopbackPorts(count: count + 1)
            let epmdPort = ports[0]
            let nodes = (0..<count).map { index in
                let letter = String(UnicodeScalar(UInt8(ascii: "a") + UInt8(index % 26)))
                return Node(
                    index: index, name: "handoff-\(letter)-\(suffix)@localhost", host: POSIX.loopbackAddress,
                    mqttPort: ports[index + 1], directory: root.appendingPathComponent("node-\(letter)", isDirectory: true)
                )
            }

            // The private epmd: the nodes register with it instead of the system's (port 4369).
            let epmdLog = root.appendingPathComponent("epmd.log")
            let startedEpmd = try await GuardedChild.launch(
                installation.epmd, ["-port", String(epmdPort), "-address", POSIX.loopbackAddress],
                environment: baseEnvironment(), workingDirectory: root, output: epmdLog, guardedDirectory: root
            )
            epmd = startedEpmd
            try await waitUntil(timeout: .seconds(10)) {
                if !startedEpmd.process.isRunning {
                    let log = tail(of: epmdLog, lines: 20)
                    throw LaunchFailure(
                        error: ClusterTestKitError(.nodeDidNotStart, "epmd exited while starting on port \(epmdPort):\n\(log)"),
                        portWasTaken: log.localizedCaseInsensitiveContains("address already in use") || log.contains("EADDRINUSE")
                    )
                }
                return POSIX.acceptsConnections(port: epmdPort)
            } onTimeout: {
                LaunchFailure(
                    error: ClusterTestKitError(
                        .nodeDidNotStart, "epmd did not listen on port \(epmdPort) within 10 seconds:\n\(tail(of: epmdLog, lines: 20))"))
            }

            // The nodes, all at once.
            let environment = nodeEnvironment(installation: installation, root: root, epmdPort: epmdPort)
            for node in nodes {
                try fileManager.createDirectory(at: node.directory.appendingPathComponent("spool"), withIntermediateDirectories: true)
                try fileManager.createDirectory(at: node.directory.appendingPathComponent("log"), withIntermediateDirectories: true)
                try configuration(mqttPort: node.mqttPort).write(to: node.configurationFile, atomically: true, encoding: .utf8)
                var own = environment
                own["EJABBERD_CONFIG_PATH"] = node.configurationFile.path
                own["EJABBERD_LOG_PATH"] = node.logFile.path
                own["ERL_CRASH_DUMP"] = node.directory.appendingPathComponent("log/erl_crash.dump").path
                children.append(
                    try await GuardedChild.launch(
                        installation.erl, nodeArguments(node),
                        environment: own, workingDirectory: node.directory, output: node.consoleFile, guardedDirectory: root
                    ))
            }
            for (node, child) in zip(nodes, children) {
                try await waitUntilStarted(node, child, startsSoFar: 0, timeout: timeout, what: "start")
            }

            let cluster = EjabberdCluster(
                nodes: nodes, directory: root, epmdPort: epmdPort, installation: installation, epmd: startedEpmd,
                processes: children
            )
            // From here on, the cluster's stop and deinit clean up.
            epmd = nil
            children = []
            do {
                try await cluster.form(timeout: timeout)
            } catch {
                await cluster.stop()
                throw error
            }
            let elapsed = ContinuousClock.now - began
            cluster.state.withLock { $0.startupDuration = elapsed }
            return cluster
        } catch let failure as LaunchFailure {
            await cleanUp()
            throw failure
        } catch let error as ClusterTestKitError {
            await cleanUp()
            throw LaunchFailure(error: error)
        } catch {
            await cleanUp()
            throw LaunchFailure(error: ClusterTestKitError(.nodeDidNotStart, "The ejabberd cluster did not start: \(error)"))
        }
    }

    /// Joins every node after the first to the first one's cluster, and waits until it lists them all.
    private func form(timeout: Duration) async throws {
        let first = nodes[0]
        for node in nodes.dropFirst() {
            let joined = try await control(on: node, ["join_cluster", first.name], timeout: timeout)
            guard joined.succeeded else {
                throw failure(
                    .clusterDidNotForm, "\(node.name) did not join \(first.name)'s cluster (status \(joined.status)):\n\(joined.output)",
                    nodes: [node, first])
            }
        }
        // join_cluster restarts ejabberd on the joining node: wait for its MQTT listener again, and for the list.
        let expected = Set(nodes.map(\.name))
        var lastList: [String] = []
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            try checkRunning()
            if nodes.allSatisfy({ POSIX.acceptsConnections(port: $0.mqttPort) }) {
                lastList = (try? await members(asSeenBy: first)) ?? lastList
                if Set(lastList) == expected { return }
            }
            if clock.now >= deadline {
                throw failure(
                    .clusterDidNotForm,
                    "The cluster did not list its \(nodes.count) nodes and accept MQTT connections within \(timeout); "
                        + "\(first.name) lists: \(lastList.isEmpty ? "(nothing)" : lastList.joined(separator: ", "))",
                    nodes: nodes
                )
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Throws if a node has exited.
    private func checkRunning() throws {
        let children = state.withLock { $0.nodes }
        for (node, child) in zip(nodes, children) where child?.process.isRunning != true {
            throw failure(.clusterDidNotForm, "\(node.name) exited.", nodes: [node])
        }
    }

    /// Waits until `node`'s log says ejabberd started (once more than `startsSoFar` times) and its MQTT port accepts.
    private static func waitUntilStarted(
        _ node: Node, _ child: GuardedChild, startsSoFar: Int, timeout: Duration, what: String
    ) async throws {
        try await waitUntil(timeout: timeout) {
            if !child.process.isRunning {
                let reason =
                    child.process.terminationReason == .exit
                    ? "exited with status \(child.process.terminationStatus)"
                    : "was killed by signal \(child.process.terminationStatus)"
                let logs = logTails(of: node, lines: 30)
                throw LaunchFailure(
                    error: ClusterTestKitError(.nodeDidNotStart, "ejabberd node \(node.name) \(reason) during its \(what).\n\(logs)"),
                    portWasTaken: logs.contains("eaddrinuse") || logs.localizedCaseInsensitiveContains("address already in use")
                )
            }
            let log = (try? String(contentsOf: node.logFile, encoding: .utf8)) ?? ""
            return log.components(separatedBy: "is started in the node").count - 1 > startsSoFar
                && POSIX.acceptsConnections(port: node.mqttPort)
        } onTimeout: {
            LaunchFailure(
                error: ClusterTestKitError(
                    .nodeDidNotStart,
                    "ejabberd node \(node.name) did not accept MQTT connections on port \(node.mqttPort) within \(timeout) (\(what)).\n"
                        + logTails(of: node, lines: 30)
                ))
        }
    }

    /// Polls `condition` every 20 ms until it holds; throws what `onTimeout` returns when `timeout` passes first.
    private static func waitUntil(
        timeout: Duration, _ condition: () throws -> Bool, onTimeout: () -> some Error
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while try !condition() {
            if clock.now >= deadline { throw onTimeout() }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    // MARK: Configuration

    /// Only what the tests need: one mod_mqtt listener on loopback, anonymous logins, big payloads, long sessions; no
    /// XMPP or HTTP listener, no other module.
    static func configuration(mqttPort: Int) -> String {
        """
        # Written by ClusterTestKit (EjabberdCluster): a private test node.
        hosts: ["localhost"]
        loglevel: info
        log_rotate_count: 0
        hide_sensitive_log_data: false
        # mod_mqtt wants a user name and a non-empty password from every client (an empty one means a TLS client
        # certificate); anonymous login accepts any.
        auth_method: [anonymous]
        anonymous_protocol: login_anon
        allow_multiple_connections: true
        acme:
          auto: false
        listen:
          -
            port: \(mqttPort)
            ip: "127.0.0.1"
            module: mod_mqtt
            backlog: 1000
            max_payload_size: \(maximumPayloadSize)
        modules:
          mod_mqtt:
            session_expiry: \(maximumSessionExpiry)
            max_queue: unlimited
            max_topic_depth: infinity
            match_retained_limit: infinity

        """
    }

    /// The environment of this process without what would change how Erlang or ejabberd runs.
    private static func baseEnvironment() -> [String: String] {
        ProcessInfo.processInfo.environment.filter { key, _ in
            !key.hasPrefix("ERL_") && !key.hasPrefix("EJABBERD_") && key != "HOME"
        }
    }

    /// What every node and every `ejabberd_ctl` command runs with.
    private static func nodeEnvironment(installation: EjabberdInstallation, root: URL, epmdPort: Int) -> [String: String] {
        var environment = baseEnvironment()
        environment["HOME"] = root.path  // where Erlang reads .erlang.cookie
        environment["ERL_EPMD_PORT"] = String(epmdPort)
        environment["ERL_LIBS"] = installation.libraries.path
        environment["ERL_MAX_PORTS"] = "8192"  // the default follows `ulimit -n`, which can be huge: memory
        return environment
    }

    /// `erl` arguments of a node: what Debian's `ejabberdctl foreground` passes, its distribution on loopback, the
    /// cluster's epmd, and schedulers that do not busy-wait (two nodes and the tests share few cores).
    private static func nodeArguments(_ node: Node) -> [String] {
        [
            // The cluster's own epmd runs already: no `epmd -daemon` per node (each would leave a zombie where PID 1
            // does not reap).
            "-sname", node.name, "-noinput", "-start_epmd", "false",
            "+K", "true", "+P", "250000",
            "+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none",
            "-env", "ERL_CRASH_DUMP_BYTES", "0",
            "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
            "-mnesia", "dir", "\"\(node.directory.appendingPathComponent("spool").path)\"",
            "-s", "ejabberd",
        ]
    }

    // MARK: Controlling

    /// Runs an `ejabberd_ctl` command (what `ejabberdctl <arguments>` runs) on `node`, from a hidden Erlang node of the
    /// cluster, and returns its output.
    ///
    /// - Throws: ``ClusterTestKitError`` (`commandFailed`) when the command fails or takes longer than 30 seconds.
    @discardableResult
    public func control(_ node: Node, _ arguments: [String]) async throws -> String {
        let outcome = try await control(on: node, arguments, timeout: Self.commandTimeout)
        guard outcome.succeeded else {
            throw ClusterTestKitError(
                .commandFailed,
                "ejabberd_ctl \(arguments.joined(separator: " ")) on \(node.name) "
                    + (outcome.finished ? "failed with status \(outcome.status)" : "did not finish within \(Self.commandTimeout)")
                    + ":\n\(outcome.output)"
            )
        }
        return outcome.output
    }

    /// The cluster's nodes as `node` lists them (`ejabberd_ctl list_cluster`).
    public func members(asSeenBy node: Node) async throws -> [String] {
        try await control(node, ["list_cluster"])
            .split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "' ")) }
            .filter { !$0.isEmpty }
    }

    private func control(on node: Node, _ arguments: [String], timeout: Duration) async throws -> CommandResult {
        if state.withLock({ $0.isRemoved }) {
            throw ClusterTestKitError(.clusterStopped, "This cluster was stopped and its folder removed.")
        }
        let environment = Self.nodeEnvironment(installation: installation, root: directory, epmdPort: epmdPort)
        return try await runCommand(
            installation.erl,
            [
                "-sname", "ctl-\(Self.randomToken(length: 8))@localhost", "-hidden", "-noinput", "-start_epmd", "false",
                "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
                "-s", "ejabberd_ctl", "-extra", node.name,
            ] + arguments,
            environment: environment, workingDirectory: directory, timeout: timeout
        )
    }

    // MARK: Stopping

    /// Stops every node (SIGTERM, SIGKILL after 5 seconds) and the cluster's epmd, and removes the cluster's folder
    /// (configurations, spools, logs, cookie). The cluster cannot be started again.
    public func stop() async {
        let (epmd, children) = state.withLock { state -> (GuardedChild?, [GuardedChild]) in
            let taken = (state.epmd, state.nodes.compactMap { $0 })
            state.epmd = nil
            state.nodes = state.nodes.map { _ in nil }
            state.isRemoved = true
            return taken
        }
        await withTaskGroup(of: Void.self) { group in
            for child in children {
                group.addTask { await child.stop(grace: Self.gracefulStopTimeout) }
            }
        }
        await epmd?.stop(grace: Self.gracefulStopTimeout)
        try? FileManager.default.removeItem(at: directory)
    }

    /// Kills `node` with SIGKILL, as a crash would (the other nodes notice that it left); returns once it has exited.
    /// It cannot be started again; ``stop()`` still cleans up.
    public func kill(_ node: Node) async {
        let child = state.withLock { state -> GuardedChild? in
            let child = state.nodes[node.index]
            state.nodes[node.index] = nil
            return child
        }
        await child?.kill()
    }

    /// Whether `node`'s process runs.
    public func isRunning(_ node: Node) -> Bool {
        state.withLock { $0.nodes[node.index]?.process.isRunning ?? false }
    }

    // MARK: Logs

    /// The last `lines` lines of `node`'s ejabberd log.
    public func logTail(of node: Node, lines: Int = 30) -> String {
        tail(of: node.logFile, lines: lines)
    }

    private static func logTails(of node: Node, lines: Int) -> String {
        """
        Configuration: \(node.configurationFile.path)
        Tail of \(node.logFile.path):
        \(tail(of: node.logFile, lines: lines))
        Tail of \(node.consoleFile.path):
        \(tail(of: node.consoleFile, lines: 10))
        """
    }

    private func failure(_ code: ClusterTestKitError.Code, _ what: String, nodes: [Node]) -> ClusterTestKitError {
        ClusterTestKitError(code, ([what] + nodes.map { Self.logTails(of: $0, lines: 30) }).joined(separator: "\n"))
    }

    private static func randomToken(length: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<length).map { _ in alphabet.randomElement()! })
    }
}

/// Starts a private ejabberd cluster (``EjabberdCluster/start(nodes:timeout:)``), runs `body` with it, then always stops
/// it and removes its folder, whether `body` returned or threw.
public func withEjabberdCluster<Result>(
    nodes: Int = 2,
    timeout: Duration = EjabberdCluster.defaultTimeout,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (EjabberdCluster) async throws -> Result
) async throws -> Result {
    let cluster = try await EjabberdCluster.start(nodes: nodes, timeout: timeout)
    do {
        let result = try await body(cluster)
        await cluster.stop()
        return result
    } catch {
        await cluster.stop()
        throw error
    }
}
