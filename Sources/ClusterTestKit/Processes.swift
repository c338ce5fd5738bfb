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

/// The last `count` lines of a text file ("(empty)" when it has none).
func tail(of file: URL, lines count: Int) -> String {
    guard let text = try? String(contentsOf: file, encoding: .utf8), !text.isEmpty else { return "(empty)" }
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    if lines.last == "" { lines.removeLast() }
    return lines.suffix(count).joined(separator: "\n")
}
