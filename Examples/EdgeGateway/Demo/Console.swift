import Foundation

/// Prints one line of the demo's output.
func say(_ line: String = "") { FileHandle.standardOutput.write(Data("\(line)\n".utf8)) }

/// `seconds` as milliseconds with one decimal, such as `3.7 ms`.
func milliseconds(_ seconds: Double) -> String { String(format: "%.1f ms", seconds * 1_000) }

/// Seconds since 1970, now.
func now() -> Double { Date().timeIntervalSince1970 }
