import Foundation
import MosquittoTestKit
import Synchronization
import Testing

/// A program of this package's build (an example) run as a real OS process, its output collected line by line.
final class ChildProcess: Sendable {
    private let process: Process
    private let buffer = LineBuffer()
    private let pipe = Pipe()

    /// The folder of the test binary, where `swift build` also puts the package's executables.
    static var buildDirectory: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    }

    /// Starts `product` (an executable of this package) with `arguments`.
    init(_ product: String, _ arguments: [String]) throws {
        var directory = Self.buildDirectory
        // On Linux the test binary may sit inside a bundle folder (…/debug/X.xctest).
        while directory.pathExtension == "xctest" { directory.deleteLastPathComponent() }
        let executable = directory.appendingPathComponent(product)
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw ChildProcessError("\(executable.path) is missing: build the examples first (swift build)")
        }
        process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        let buffer = buffer
        try process.run()
        PipeDrain.start(pipe.fileHandleForReading, name: product) { data in buffer.append(data) }
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// Every line printed so far.
    var output: [String] { buffer.lines.withLock { $0 } }

    /// Waits up to `limit` for a line for which `match` returns a value, and returns it.
    func waitForLine<T>(upTo limit: Duration = .seconds(20), _ match: (String) -> T?) async -> T? {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        while clock.now < deadline {
            if let found = output.lazy.compactMap(match).first { return found }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    /// Sends a signal (a real one: `kill(2)`).
    func send(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits up to `limit` for the process to exit and returns its status (nil if it did not exit).
    func waitForExit(upTo limit: Duration = .seconds(20)) async -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        while process.isRunning {
            if clock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
        // Let the reader pick up the last lines.
        try? await Task.sleep(for: .milliseconds(50))
        return process.terminationStatus
    }
}

/// Splits bytes into lines as they arrive.
final class LineBuffer: Sendable {
    let lines = Mutex<[String]>([])
    private let pending = Mutex(Data())

    func append(_ data: Data) {
        let complete = pending.withLock { pending -> [String] in
            pending.append(data)
            var found: [String] = []
            while let newline = pending.firstIndex(of: 0x0A) {
                found.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                pending.removeSubrange(pending.startIndex...newline)
            }
            return found
        }
        lines.withLock { $0 += complete }
    }
}

struct ChildProcessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The integer after `prefix` at the start of `line`.
func number(after prefix: String, in line: String) -> Int? {
    guard line.hasPrefix(prefix) else { return nil }
    return Int(line.dropFirst(prefix.count).prefix { $0.isNumber })
}
