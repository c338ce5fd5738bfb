import Foundation
import MosquittoTestKit
import Synchronization
import Testing

/// The built `handoff` binary (or another executable of this package) run as a real OS process, with its standard
/// output and standard error collected and its exit status.
final class CLIProcess: Sendable {
    private let process: Process
    private let stdoutBuffer = SharedData()
    private let stderrBuffer = SharedData()

    /// The folder of the test binary, where `swift build` also puts the package's executables.
    static var buildDirectory: URL {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        // On Linux the test binary may sit inside a bundle folder (…/debug/X.xctest).
        while directory.pathExtension == "xctest" { directory.deleteLastPathComponent() }
        return directory
    }

    /// Starts `product` with `arguments`. The environment is the test's without any `HANDOFF_*` variable, plus
    /// `environment`; `input` is written to its standard input, which is then closed.
    init(_ product: String = "handoff", _ arguments: [String], environment: [String: String] = [:], input: String? = nil) throws {
        let executable = Self.buildDirectory.appendingPathComponent(product)
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw CLITestError("\(executable.path) is missing: build it first (swift build --build-tests)")
        }
        process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var variables = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("HANDOFF_") }
        variables.merge(environment) { $1 }
        process.environment = variables
        let (out, err, inp) = (Pipe(), Pipe(), Pipe())
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inp
        let stdoutBuffer = self.stdoutBuffer
        let stderrBuffer = self.stderrBuffer
        try process.run()
        PipeDrain.start(out.fileHandleForReading, name: "handoff stdout") { data in stdoutBuffer.value.withLock { $0.append(data) } }
        PipeDrain.start(err.fileHandleForReading, name: "handoff stderr") { data in stderrBuffer.value.withLock { $0.append(data) } }
        if let input { inp.fileHandleForWriting.write(Data(input.utf8)) }
        try? inp.fileHandleForWriting.close()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    var stdout: String { stdoutBuffer.value.withLock { String(decoding: $0, as: UTF8.self) } }
    var stderr: String { stderrBuffer.value.withLock { String(decoding: $0, as: UTF8.self) } }
    var stdoutLines: [String] { stdout.split(separator: "\n").map(String.init) }

    /// Sends a real signal.
    func send(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits up to `limit` for the process to exit; its status, or nil (then it is killed).
    func waitForExit(upTo limit: Duration = .seconds(20)) async -> Int32? {
        let deadline = ContinuousClock.now + limit
        while process.isRunning {
            if ContinuousClock.now >= deadline {
                send(SIGKILL)
                return nil
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        // Let the readers pick up the last bytes.
        try? await Task.sleep(for: .milliseconds(50))
        return process.terminationStatus
    }

    /// Waits up to `limit` until `condition` holds for the output so far.
    func waitFor(upTo limit: Duration = .seconds(15), _ condition: (CLIProcess) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if condition(self) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition(self)
    }
}

/// The outcome of one finished run.
struct CLIRun: CustomStringConvertible {
    var status: Int32?
    var stdout: String
    var stderr: String

    var lines: [String] { stdout.split(separator: "\n").map(String.init) }

    /// JSON of standard output.
    func json() throws -> Any { try JSONSerialization.jsonObject(with: Data(stdout.utf8)) }

    var description: String { "status \(status.map(String.init) ?? "none")\nstdout:\n\(stdout)\nstderr:\n\(stderr)" }

    /// Failed as the tool promises: non-zero status, one `handoff: error:` line on standard error, nothing of a crash.
    func isCleanFailure(status expected: Int32 = 1) -> Bool {
        let errorLines = stderr.split(separator: "\n")
        return status == expected && errorLines.count == 1 && !stderr.contains("Fatal error") && !stderr.contains("Backtrace")
            && !stderr.contains("Stack dump")
    }
}

/// Runs `handoff` with `arguments` to its end.
func handoff(_ arguments: [String], environment: [String: String] = [:], input: String? = nil, upTo limit: Duration = .seconds(30))
    async throws -> CLIRun
{
    try await run("handoff", arguments, environment: environment, input: input, upTo: limit)
}

/// Runs a product of this package to its end.
func run(
    _ product: String, _ arguments: [String], environment: [String: String] = [:], input: String? = nil, upTo limit: Duration = .seconds(30)
) async throws -> CLIRun {
    let process = try CLIProcess(product, arguments, environment: environment, input: input)
    let status = await process.waitForExit(upTo: limit)
    return CLIRun(status: status, stdout: process.stdout, stderr: process.stderr)
}

struct CLITestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Bytes shared with a pipe's reader.
final class SharedData: Sendable {
    let value = Mutex(Data())
}
