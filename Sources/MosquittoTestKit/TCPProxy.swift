import Foundation
import Synchronization

/// A TCP proxy in front of a broker port, for failure tests: cut every connection (the peers see a
/// reset, no DISCONNECT), stop forwarding (a network that swallows packets), refuse new connections.
///
/// It runs `scripts/tcp-proxy.py` with the system's `python3`.
public final class TCPProxy: Sendable {
    /// The loopback port clients connect to.
    public let port: Int
    private let process: Process
    private let commands: FileHandle
    private let replies: Mutex<FileHandle>

    /// Starts a proxy on a free loopback port forwarding to `127.0.0.1:targetPort`.
    public static func start(forwardingTo targetPort: Int) async throws -> TCPProxy {
        let script = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/tcp-proxy.py")
        guard let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw MosquittoTestKitError(
                .executableNotFound, "python3 is needed for the TCP proxy of the failure tests: apt-get install python3")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path, "0", String(targetPort)]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let handle = output.fileHandleForReading
        let firstLine = await offThePool { readLine(handle) }
        guard let port = Int(firstLine) else {
            process.terminate()
            throw MosquittoTestKitError(.commandFailed, "The TCP proxy did not start (it printed '\(firstLine)')")
        }
        return TCPProxy(port: port, process: process, commands: input.fileHandleForWriting, replies: handle)
    }

    private init(port: Int, process: Process, commands: FileHandle, replies: FileHandle) {
        self.port = port
        self.process = process
        self.commands = commands
        self.replies = Mutex(replies)
    }

    deinit { stop() }

    // The commands wait for the proxy's acknowledgement on a thread of their own: a test blocking one of the cooperative
    // pool's few threads (two on a 2-core machine) would stall every other test running beside it.

    /// Resets every open connection.
    public func cutAllConnections() async { await send("cut") }
    /// Stops forwarding bytes; connections stay open.
    public func pause() async { await send("pause") }
    /// Forwards bytes again.
    public func resume() async { await send("resume") }
    /// Resets new connections at once.
    public func refuseNewConnections() async { await send("refuse") }
    /// Accepts new connections again.
    public func acceptNewConnections() async { await send("accept") }

    /// Stops the proxy: its connections die with it, shortly after (it is not waited for).
    public func stop() {
        guard process.isRunning else { return }
        try? commands.close()
        process.terminate()
    }

    /// Sends a command and waits for its acknowledgement, so that it has taken effect on return.
    private func send(_ command: String) async {
        await Self.offThePool { [self] in
            replies.withLock { replies in
                guard process.isRunning else { return }
                commands.write(Data("\(command)\n".utf8))
                _ = Self.readLine(replies)
            }
        }
    }

    /// Runs blocking `body` on a thread of its own.
    private static func offThePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }

    private static func readLine(_ handle: FileHandle) -> String {
        var bytes: [UInt8] = []
        while let byte = try? handle.read(upToCount: 1), let first = byte.first, first != UInt8(ascii: "\n") {
            bytes.append(first)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
public func freeLoopbackPort() throws -> Int {
    try POSIX.freeLoopbackPort()
}
