import Foundation
import MosquittoTestKit

/// A long-running child (the private epmd or an ejabberd node) and the guard that kills it if the test process dies.
struct GuardedChild: Sendable {
    let process: Process
    let watchdog: ParentDeathWatchdog

    /// Runs `executable` with an empty signal mask (so that SIGTERM stops it gracefully), its output appended to
    /// `output`, and starts its guard, which removes `directory` if the test process dies first.
    static func launch(
        _ executable: URL,
        _ arguments: [String],
        environment: [String: String],
        workingDirectory: URL,
        output: URL,
        guardedDirectory: URL
    ) async throws -> GuardedChild {
        guard FileManager.default.createFile(atPath: output.path, contents: nil) else {
            throw ClusterTestKitError(.nodeDidNotStart, "Cannot create \(output.path).")
        }
        let handle = try FileHandle(forWritingTo: output)
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        process.currentDirectoryURL = workingDirectory
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = handle
        process.standardError = handle
        do {
            try await POSIX.runWithEmptySignalMask(process)
        } catch {
            throw ClusterTestKitError(.nodeDidNotStart, "Could not run \(executable.path): \(error)")
        }
        do {
            let watchdog = try ParentDeathWatchdog(guarding: process.processIdentifier, removingOnParentDeath: guardedDirectory)
            return GuardedChild(process: process, watchdog: watchdog)
        } catch {
            POSIX.send(SIGKILL, to: process.processIdentifier)
            _ = await waitForExit(of: process, timeout: .seconds(5))
            throw error
        }
    }

    /// SIGTERM, then SIGKILL when it has not exited within `grace`; returns once it has exited, and stops the guard.
    func stop(grace: Duration) async {
        if process.isRunning {
            process.terminate()
            if await !waitForExit(of: process, timeout: grace) {
                POSIX.send(SIGKILL, to: process.processIdentifier)
                _ = await waitForExit(of: process, timeout: .seconds(5))
            }
        }
        watchdog.stop()
    }

    /// SIGKILL, as a crash would; returns once it has exited, and stops the guard.
    func kill() async {
        if process.isRunning {
            POSIX.send(SIGKILL, to: process.processIdentifier)
            _ = await waitForExit(of: process, timeout: .seconds(5))
        }
        watchdog.stop()
    }

    /// The last resort of a deinit: SIGKILL without waiting.
    func killNow() {
        if process.isRunning { POSIX.send(SIGKILL, to: process.processIdentifier) }
        watchdog.stop()
    }
}

/// Waits until `process` has exited; false when `timeout` passed first.
func waitForExit(of process: Process, timeout: Duration) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while process.isRunning {
        if clock.now >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return true
}

/// The outcome of a finished command.
struct CommandOutcome: Sendable {
    /// The exit status (or the signal number when it was killed).
    var status: Int32
    /// Whether it ran to its end within the time limit.
    var finished: Bool
    /// Standard output and standard error, interleaved.
    var output: String

    var succeeded: Bool { finished && status == 0 }
}

/// Runs a short command to completion with `environment`, killing it after `timeout`; its output goes through a file
/// (a pipe could fill up and stall it).
func runCommand(
    _ executable: URL,
    _ arguments: [String],
    environment: [String: String],
    workingDirectory: URL,
    timeout: Duration
) async throws -> CommandOutcome {
    let outputFile = workingDirectory.appendingPathComponent("command-\(UUID().uuidString).out")
    guard FileManager.default.createFile(atPath: outputFile.path, contents: nil) else {
        throw ClusterTestKitError(.commandFailed, "Could not create \(outputFile.path) to collect a command's output.")
    }
    defer { try? FileManager.default.removeItem(at: outputFile) }
    let handle = try FileHandle(forWritingTo: outputFile)
    defer { try? handle.close() }
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.environment = environment
    process.currentDirectoryURL = workingDirectory
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = handle
    process.standardError = handle
    do {
        try process.run()
    } catch {
        throw ClusterTestKitError(.commandFailed, "Could not run \(executable.path): \(error)")
    }
    let finished = await waitForExit(of: process, timeout: timeout)
    if !finished {
        POSIX.send(SIGKILL, to: process.processIdentifier)
        _ = await waitForExit(of: process, timeout: .seconds(5))
    }
    let output = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
    return CommandOutcome(status: process.isRunning ? -1 : process.terminationStatus, finished: finished, output: output)
}

/// The last `count` lines of a text file ("(empty)" when it has none).
func tail(of file: URL, lines count: Int) -> String {
    guard let text = try? String(contentsOf: file, encoding: .utf8), !text.isEmpty else { return "(empty)" }
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    if lines.last == "" { lines.removeLast() }
    return lines.suffix(count).joined(separator: "\n")
}
