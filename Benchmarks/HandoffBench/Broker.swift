import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A private mosquitto on a free loopback port, with the settings both sides of the benchmark share.
///
/// The bench starts one for the whole run; swift-handoff and the floor use it in turn, each scenario under
/// a topic prefix of its own, so retained messages of one never reach another.
final class BenchBroker: Sendable {
    /// The broker settings of the benchmark (issue 6): the same for swift-handoff and the floor.
    /// No persistence (mosquitto's default): broker/mosquitto.conf saves the store on every change, which
    /// measures the disk, not the handoff (see docs/BENCHMARKS.md).
    static let settings = [
        "allow_anonymous true",
        "set_tcp_nodelay true",
        "max_queued_messages 0",
        "max_inflight_messages 0",
    ]

    let host = "127.0.0.1"
    let port: Int
    let version: String
    let configuration: [String]
    private let process: Process
    private let directory: URL

    private init(port: Int, version: String, configuration: [String], process: Process, directory: URL) {
        self.port = port
        self.version = version
        self.configuration = configuration
        self.process = process
        self.directory = directory
    }

    static func executable() throws -> URL {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let candidates = path.split(separator: ":").map { "\($0)/mosquitto" } + ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw BenchError("mosquitto not found (Debian: apt-get install mosquitto)")
        }
        return URL(fileURLWithPath: found)
    }

    /// The durability settings of the repository's broker/mosquitto.conf (the `durable` profile): the store saved after
    /// every change, sessions kept for an hour.
    static let durableSettings = ["persistence true", "autosave_on_changes true", "autosave_interval 1", "persistent_client_expiration 1h"]

    /// Starts a broker with ``settings``, plus `extraSettings` (the crash scenario adds `sys_interval 1` to read the
    /// broker's own byte counters on `$SYS/broker/…`); `durable` adds ``durableSettings``, its store in the broker's
    /// temporary folder.
    static func start(extraSettings: [String] = [], durable: Bool = false) async throws -> BenchBroker {
        let executable = try executable()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("handoff-bench-\(getpid())-\(monotonicNow())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let version = versionString(executable)
        var lastError = ""
        // A free port can be taken between finding it and mosquitto binding it: try a few.
        for _ in 0..<5 {
            let port = try freePort()
            let durability = durable ? durableSettings + ["persistence_location \(directory.path)/"] : []
            let configuration = ["listener \(port) 127.0.0.1"] + settings + extraSettings + durability
            let file = directory.appendingPathComponent("mosquitto.conf")
            let log = directory.appendingPathComponent("mosquitto.log")
            let text = (configuration + ["log_dest file \(log.path)", "log_type error", "log_type warning"]).joined(separator: "\n") + "\n"
            try text.write(to: file, atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = executable
            process.arguments = ["-c", file.path]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            ChildProcesses.register(process.processIdentifier)
            let broker = BenchBroker(port: port, version: version, configuration: configuration, process: process, directory: directory)
            let deadline = monotonicNow() + 10_000_000_000
            while process.isRunning, monotonicNow() < deadline {
                if canConnect(port: port) { return broker }
                try await Task.sleep(for: .milliseconds(20))
            }
            lastError = (try? String(contentsOf: log, encoding: .utf8)) ?? "no log"
            broker.stop()
        }
        throw BenchError("mosquitto did not start: \(lastError)")
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 5 s) and removes its directory.
    func stop() {
        if process.isRunning {
            process.terminate()
            let deadline = monotonicNow() + 5_000_000_000
            while process.isRunning, monotonicNow() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        ChildProcesses.unregister(process.processIdentifier)
        try? FileManager.default.removeItem(at: directory)
    }

    private static func versionString(_ executable: URL) -> String {
        let process = Process()
        process.executableURL = executable
        process.arguments = ["-h"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return "unknown" }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return output.split(separator: "\n").first.map(String.init) ?? "unknown"
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw BenchError("bind() failed: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw BenchError("getsockname() failed: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}

/// Child processes (the broker, role processes) killed when the bench exits early (error, SIGINT, SIGTERM),
/// so that no broker outlives the run.
enum ChildProcesses {
    private static let pids = Mutex<Set<Int32>>([])

    static func register(_ pid: Int32) { _ = pids.withLock { $0.insert(pid) } }
    static func unregister(_ pid: Int32) { _ = pids.withLock { $0.remove(pid) } }

    /// Sends SIGTERM to every registered child.
    static func terminateAll() {
        for pid in pids.withLock({ $0 }) { kill(pid, SIGTERM) }
    }

    /// On SIGINT or SIGTERM: terminate the children, then exit.
    static func installSignalHandlers() {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber) { received in
                ChildProcesses.terminateAll()
                _exit(128 + received)
            }
        }
    }
}
