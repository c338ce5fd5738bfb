import Foundation

/// A program the test kit runs, with where to look for it and how to install it when it is missing.
struct ExternalProgram: Sendable, Hashable {
    /// The executable's file name.
    var name: String
    /// What to tell a person whose machine lacks it.
    var installAdvice: String

    static let mosquitto = ExternalProgram(
        name: "mosquitto",
        installAdvice: "Install it: `apt-get install mosquitto` (Debian/Ubuntu) or `brew install mosquitto` (macOS)."
    )
    static let openssl = ExternalProgram(
        name: "openssl",
        installAdvice: "Install it: `apt-get install openssl` (Debian/Ubuntu) or `brew install openssl` (macOS)."
    )
    static let mosquittoPublish = ExternalProgram(
        name: "mosquitto_pub",
        installAdvice: "Install it: `apt-get install mosquitto-clients` (Debian/Ubuntu) or `brew install mosquitto` (macOS)."
    )
    static let mosquittoSubscribe = ExternalProgram(
        name: "mosquitto_sub",
        installAdvice: "Install it: `apt-get install mosquitto-clients` (Debian/Ubuntu) or `brew install mosquitto` (macOS)."
    )

    /// Folders searched after `PATH`: mosquitto installs into an `sbin` folder, which is often not on `PATH`.
    static let extraSearchFolders = ["/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin", "/opt/homebrew/bin", "/sbin"]

    /// The folders searched: those of `PATH`, then ``extraSearchFolders``.
    static func defaultSearchFolders(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        let path = environment["PATH"] ?? ""
        let pathFolders = path.split(separator: ":").map(String.init).filter { !$0.isEmpty }
        var seen = Set<String>()
        return (pathFolders + extraSearchFolders).filter { seen.insert($0).inserted }
    }

    /// The executable's location, or an error that says how to install it.
    func locate(searchFolders: [String] = ExternalProgram.defaultSearchFolders()) throws -> URL {
        for folder in searchFolders {
            let candidate = URL(fileURLWithPath: folder).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        throw MosquittoTestKitError(
            .executableNotFound,
            "`\(name)` was not found (searched \(searchFolders.joined(separator: ":"))). \(installAdvice)"
        )
    }
}

/// The outcome of a finished command.
package struct CommandResult: Sendable {
    /// The exit status, or the signal number when the command was killed by a signal.
    package var status: Int32
    /// Whether the command exited (rather than being killed by a signal).
    package var exited: Bool
    /// Whether it ended within its time limit (it was killed when it did not).
    package var finished: Bool
    /// Standard output and standard error, interleaved.
    package var output: String

    package var succeeded: Bool { finished && exited && status == 0 }
}

/// Runs a command to completion without blocking a thread, with its output collected in a temporary file
/// (a pipe could fill up and stall the command); with a `timeout`, it is killed (SIGKILL) when it runs longer.
package func runCommand(
    _ executable: URL,
    _ arguments: [String],
    environment: [String: String]? = nil,
    workingDirectory: URL? = nil,
    timeout: Duration? = nil
) async throws -> CommandResult {
    let outputFile = (workingDirectory ?? FileManager.default.temporaryDirectory)
        .appendingPathComponent("mosquitto-test-kit-output-\(UUID().uuidString)")
    guard FileManager.default.createFile(atPath: outputFile.path, contents: nil) else {
        throw MosquittoTestKitError(.commandFailed, "Could not create \(outputFile.path) to collect a command's output.")
    }
    defer { try? FileManager.default.removeItem(at: outputFile) }
    let outputHandle = try FileHandle(forWritingTo: outputFile)
    defer { try? outputHandle.close() }

    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let environment { process.environment = environment }
    if let workingDirectory { process.currentDirectoryURL = workingDirectory }
    process.standardOutput = outputHandle
    process.standardError = outputHandle
    process.standardInput = FileHandle.nullDevice

    let timedOut = LockedValue(false)
    let (status, reason) = try await withCheckedThrowingContinuation {
        (continuation: CheckedContinuation<(Int32, Process.TerminationReason), any Error>) in
        process.terminationHandler = { finished in
            continuation.resume(returning: (finished.terminationStatus, finished.terminationReason))
        }
        do {
            try process.run()
        } catch {
            process.terminationHandler = nil
            continuation.resume(
                throwing: MosquittoTestKitError(
                    .commandFailed, "Could not run \(executable.path): \(error)"
                ))
            return
        }
        if let timeout {
            let pid = process.processIdentifier
            Task {
                try? await Task.sleep(for: timeout)
                guard process.isRunning else { return }
                timedOut.withLock { $0 = true }
                POSIX.send(SIGKILL, to: pid)
            }
        }
    }
    let output = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
    return CommandResult(status: status, exited: reason == .exit, finished: !timedOut.withLock { $0 }, output: output)
}

/// Waits until `process` has exited, without blocking a thread; `false` when `timeout` passed first.
package func waitForExit(of process: Process, timeout: Duration) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while process.isRunning {
        if clock.now >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return true
}
