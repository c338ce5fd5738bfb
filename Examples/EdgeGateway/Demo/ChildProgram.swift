import Foundation

/// One of the example's programs, run as a real OS process, its output in a log file.
final class ChildProgram {
    let name: String
    let process = Process()
    let logFile: URL

    /// Starts `product` (a sibling executable of this demo, from the same build) with `arguments`.
    init(_ name: String, product: String, arguments: [String], logDirectory: URL) throws {
        self.name = name
        let executable = Self.buildDirectory.appendingPathComponent(product)
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw DemoFailure("\(executable.path) is missing: build it first (swift build --product \(product))")
        }
        logFile = logDirectory.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    /// The folder this demo's executable is in: `swift build` puts the other examples there too.
    static var buildDirectory: URL {
        (Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0]))
            .resolvingSymlinksInPath()
            .deletingLastPathComponent()
    }

    var pid: Int32 { process.processIdentifier }

    /// Sends a real signal (`kill(2)`).
    func send(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits for the process to exit; its status, or nil after `limit`.
    func waitForExit(upTo limit: Duration = .seconds(15)) async -> Int32? {
        let ok = await waitUntil(upTo: limit) { !self.process.isRunning }
        return ok ? process.terminationStatus : nil
    }

    /// Whether it has ended by a signal (such as SIGKILL) rather than by exiting.
    var killedBySignal: Bool { !process.isRunning && process.terminationReason == .uncaughtSignal }

    /// Kills it if it still runs.
    func killIfRunning() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// The last lines of its log.
    func logTail(_ lines: Int = 15) -> String {
        let text = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).map { "    | \($0)" }.joined(separator: "\n")
    }
}

/// Why the demo failed.
struct DemoFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` every 10 ms until it holds (true) or `limit` passes (false).
func waitUntil(upTo limit: Duration, _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while !condition() {
        if clock.now >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return true
}
