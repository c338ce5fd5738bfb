import Foundation
import MosquittoTestKit

/// A private redis-server on loopback for one test (the store of the Redis claim arbiter, docs/PROTOCOL.md §11): a free
/// port, a temporary folder, the append-only file fsynced after every write. Stopped and removed by ``stop()``.
public final class RedisServer: @unchecked Sendable {
    public let host = "127.0.0.1"
    public let port: Int
    private let directory: URL
    private let executable: String
    private var process = Process()

    static let executable = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Starts a server and waits until it answers.
    public static func start() async throws -> RedisServer {
        guard let executable else {
            throw RedisServerError("redis-server not found: apt-get install redis-server (scripts/install-deps.sh installs it)")
        }
        for _ in 0..<5 {
            let server = try RedisServer(executable: executable, port: POSIX.freeLoopbackPort())
            if await server.waitUntilReady() { return server }
            server.stop()
        }
        throw RedisServerError("redis-server did not start on loopback after 5 tries")
    }

    private init(executable: String, port: Int) throws {
        self.port = port
        self.executable = executable
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("handoff-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try launch()
    }

    private func launch() throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "--bind", host, "--port", "\(port)", "--dir", directory.path, "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--daemonize", "no", "--protected-mode", "no", "--logfile",
            directory.appendingPathComponent("redis.log").path,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    private func waitUntilReady() async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, process.isRunning {
            if Self.answers(host: host, port: port) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// Kills the server (SIGKILL) and keeps its folder: ``restart()`` brings it back with what it had fsynced.
    public func crash() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Starts the crashed server again on the same port and folder.
    public func restart() async throws {
        try launch()
        guard await waitUntilReady() else { throw RedisServerError("redis-server did not come back on port \(port)") }
    }

    /// Stops the server and removes its folder.
    public func stop() {
        crash()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }

    private static func answers(host: String, port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        let ping = Array("PING\r\n".utf8)
        guard send(descriptor, ping, ping.count, Int32(MSG_NOSIGNAL)) == ping.count else { return false }
        var reply = [UInt8](repeating: 0, count: 16)
        return recv(descriptor, &reply, reply.count, 0) > 0 && reply.starts(with: Array("+PONG".utf8))
    }
}

/// Why a private redis-server could not be used.
public struct RedisServerError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` with a private Redis server, stopped afterwards.
public func withRedisServer<T>(_ body: (RedisServer) async throws -> T) async throws -> T {
    let server = try await RedisServer.start()
    defer { server.stop() }
    return try await body(server)
}
