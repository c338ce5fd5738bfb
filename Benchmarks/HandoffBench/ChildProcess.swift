import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The directory of this executable (the build directory: handoff-floor is built next to it).
func executableDirectory() -> URL {
    let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: path).deletingLastPathComponent()
}

/// A child process whose stdout is read line by line and whose stdin can be written to.
final class ChildProcess: Sendable {
    let name: String
    let lines: AsyncStream<String>
    private let process: Process
    private let input: FileHandle
    private let stderrTail: Locked<[String]>

    init(name: String, executable: URL, arguments: [String]) throws {
        self.name = name
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let stdout = Pipe()
        let stdin = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardInput = stdin
        process.standardError = stderr
        self.process = process
        self.input = stdin.fileHandleForWriting
        let (lines, continuation) = AsyncStream.makeStream(of: String.self)
        self.lines = lines
        let tail = Locked<[String]>([])
        self.stderrTail = tail
        try process.run()
        ChildProcesses.register(process.processIdentifier)
        // Blocking reads on threads of their own, never on the cooperative pool.
        let out = stdout.fileHandleForReading
        Thread {
            var buffer = Data()
            while true {
                let chunk = out.availableData
                if chunk.isEmpty { break }
                buffer.append(chunk)
                while let newline = buffer.firstIndex(of: 0x0A) {
                    continuation.yield(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                    buffer.removeSubrange(buffer.startIndex...newline)
                }
            }
            if !buffer.isEmpty { continuation.yield(String(decoding: buffer, as: UTF8.self)) }
            continuation.finish()
        }.start()
        let err = stderr.fileHandleForReading
        Thread {
            while true {
                let chunk = err.availableData
                if chunk.isEmpty { break }
                let text = String(decoding: chunk, as: UTF8.self)
                tail.withLock { tail in
                    tail.append(contentsOf: text.split(separator: "\n").map(String.init))
                    if tail.count > 40 { tail.removeFirst(tail.count - 40) }
                }
            }
        }.start()
    }

    /// Writes one line to the child's stdin.
    func send(_ line: String) {
        input.write(Data((line + "\n").utf8))
    }

    /// The last lines the child wrote to stderr.
    var errorOutput: String { stderrTail.value.joined(separator: "\n") }

    /// Waits for the child to exit and returns its status.
    func wait() async -> Int32 {
        let process = self.process
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread {
                process.waitUntilExit()
                continuation.resume(returning: process.terminationStatus)
            }.start()
        }
        ChildProcesses.unregister(process.processIdentifier)
        return status
    }

    func terminate() {
        if process.isRunning { process.terminate() }
    }

    /// Sends `signal` (SIGKILL: a crash) to the child.
    func kill(_ signal: Int32) {
        if process.isRunning { _ = Glibc.kill(process.processIdentifier, signal) }
    }
}

/// Runs `handoff-floor` for one scenario against the bench's broker and returns its JSON report.
struct FloorRunner: Sendable {
    let executable: URL
    let host: String
    let port: Int
    /// Do not run the floor (profiling): every floor figure is missing.
    var skip = false

    static func locate(_ explicit: String?) throws -> URL {
        let url = explicit.map { URL(fileURLWithPath: $0) } ?? executableDirectory().appendingPathComponent("handoff-floor")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw BenchError(
                "handoff-floor not found at \(url.path); build it with `swift build -c release --product handoff-floor` "
                    + "(swift run handoff-bench builds it too) or pass --floor PATH"
            )
        }
        return url
    }

    func run(scenario: String, prefix: String, _ arguments: [String]) async throws -> JSON {
        if skip { return .object([]) }
        let child = try ChildProcess(
            name: "handoff-floor \(scenario)",
            executable: executable,
            arguments: ["--host", host, "--port", String(port), "--scenario", scenario, "--prefix", prefix] + arguments
        )
        var output: [String] = []
        for await line in child.lines { output.append(line) }
        let status = await child.wait()
        guard status == 0 else {
            throw BenchError("handoff-floor \(scenario) exited with status \(status): \(child.errorOutput)")
        }
        guard let line = output.last(where: { $0.hasPrefix("{") }) else {
            throw BenchError("handoff-floor \(scenario) printed no JSON: \(output.joined(separator: "\n"))")
        }
        return try JSON(parsing: line)
    }
}
