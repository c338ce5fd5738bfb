import Foundation

/// Kills a broker when the test process dies without stopping it (a crash, a SIGKILL, a debugger stop).
///
/// Foundation's `Process` cannot ask the kernel to signal a child when its parent dies (Linux's
/// `prctl(PR_SET_PDEATHSIG)`), so a tiny `/bin/sh` stands guard instead: its standard input is one end of a socket pair
/// whose other end only this process holds (close-on-exec, so no other child inherits it). When this process dies, the
/// kernel closes that end, `read` returns, and the shell sends SIGKILL to the broker, then removes the broker's folder
/// (a second later, so that no write the broker had under way recreates a file in it). A normal stop kills the guard
/// first, then closes its end, so the guard never signals a process that has already exited.
package final class ParentDeathWatchdog: @unchecked Sendable {
    // @unchecked: `process` and `lifeline` are set once in init and only used through their thread-safe methods.
    private let process: Process
    private let lifeline: FileHandle

    /// Starts guarding process `pid`; if this process dies first, the guard kills `pid` and removes `directory`.
    package init(guarding pid: Int32, removingOnParentDeath directory: URL) throws {
        let (guardEnd, lifeline) = try POSIX.makeCloseOnExecSocketPair()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [
            "-c", #"read -r _ || true; kill -KILL "$1" 2>/dev/null; sleep 1; rm -rf "$2""#,
            "mosquitto-test-kit-watchdog", String(pid), directory.path,
        ]
        process.standardInput = guardEnd
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw MosquittoTestKitError(.brokerDidNotStart, "Could not start /bin/sh to guard mosquitto: \(error)")
        }
        try? guardEnd.close()
        self.process = process
        self.lifeline = lifeline
    }

    /// Stops guarding: kills the guard, then closes this process's end of the socket pair.
    package func stop() {
        if process.isRunning {
            POSIX.send(SIGKILL, to: process.processIdentifier)
        }
        try? lifeline.close()
    }
}
