import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `CLOCK_MONOTONIC` in nanoseconds: the clock the floor uses, comparable across processes.
func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func milliseconds(_ ns: UInt64) -> Double { Double(ns) / 1e6 }

/// Percentiles of a sample of durations, nearest rank, as the floor computes them (report.c).
struct Stats: Sendable {
    var p50 = 0.0, p90 = 0.0, p99 = 0.0, max = 0.0, min = 0.0, mean = 0.0  // milliseconds
    var count = 0

    init(nanoseconds samples: [UInt64]) {
        count = samples.count
        guard !samples.isEmpty else { return }
        let sorted = samples.sorted()
        func percentile(_ q: Double) -> Double {
            let rank = Swift.min(Swift.max(Int((q * Double(sorted.count)).rounded(.up)), 1), sorted.count)
            return milliseconds(sorted[rank - 1])
        }
        p50 = percentile(0.50)
        p90 = percentile(0.90)
        p99 = percentile(0.99)
        min = milliseconds(sorted[0])
        max = milliseconds(sorted[sorted.count - 1])
        mean = Double(sorted.reduce(0.0) { $0 + Double($1) }) / Double(sorted.count) / 1e6
    }

    /// `{prefix}p50_ms` ... like the floor's `floor_json_stats`.
    func fields(_ prefix: String = "") -> [(String, JSON)] {
        [
            ("\(prefix)p50_ms", .ms(p50)), ("\(prefix)p90_ms", .ms(p90)), ("\(prefix)p99_ms", .ms(p99)),
            ("\(prefix)max_ms", .ms(max)), ("\(prefix)min_ms", .ms(min)), ("\(prefix)mean_ms", .ms(mean)),
        ]
    }
}

/// Resident memory of this process from /proc/self/status, in kilobytes: the peak (VmHWM) and now (VmRSS).
func residentMemory() -> (peakKB: Int, currentKB: Int) {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (-1, -1) }
    var peak = -1
    var current = -1
    for line in text.split(separator: "\n") {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count >= 2, let value = Int(fields[1]) else { continue }
        if fields[0] == "VmHWM:" { peak = value }
        if fields[0] == "VmRSS:" { current = value }
    }
    return (peak, current)
}

/// A JSON value that keeps the order of object keys.
indirect enum JSON: Sendable {
    case null
    case bool(Bool)
    case int(Int)
    /// Printed with three decimals, like the floor.
    case number(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    static func ms(_ value: Double) -> JSON { .number(value) }

    /// Parses one JSON text (the floor's report), keeping the order of keys.
    init(parsing text: String) throws {
        var parser = JSONParser(bytes: Array(text.utf8))
        self = try parser.value()
        parser.skipSpace()
        guard parser.index == parser.bytes.count else { throw BenchError("trailing characters after the JSON value") }
    }

    subscript(key: String) -> JSON? {
        guard case .object(let fields) = self else { return nil }
        return fields.first { $0.0 == key }?.1
    }

    var double: Double? {
        switch self {
        case .int(let value): Double(value)
        case .number(let value): value
        default: nil
        }
    }

    var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// Compact when `indent` is nil; otherwise pretty-printed with that many spaces per level.
    func serialized(indent: Int? = nil, level: Int = 0) -> String {
        let newline = indent == nil ? "" : "\n"
        let pad = { (depth: Int) in String(repeating: " ", count: (indent ?? 0) * depth) }
        switch self {
        case .null: return "null"
        case .bool(let value): return value ? "true" : "false"
        case .int(let value): return String(value)
        case .number(let value):
            guard value.isFinite else { return "null" }
            return String(format: "%.3f", value)
        case .string(let value): return JSON.quote(value)
        case .array(let values):
            if values.isEmpty { return "[]" }
            // Arrays of numbers stay on one line.
            if values.allSatisfy({ if case .number = $0 { true } else if case .int = $0 { true } else { false } }) {
                return "[" + values.map { $0.serialized() }.joined(separator: ", ") + "]"
            }
            let items = values.map { pad(level + 1) + $0.serialized(indent: indent, level: level + 1) }
            return "[" + newline + items.joined(separator: "," + newline) + newline + pad(level) + "]"
        case .object(let fields):
            if fields.isEmpty { return "{}" }
            let separator = indent == nil ? ":" : ": "
            let items = fields.map { key, value in
                pad(level + 1) + JSON.quote(key) + separator + value.serialized(indent: indent, level: level + 1)
            }
            return "{" + newline + items.joined(separator: "," + newline) + newline + pad(level) + "}"
        }
    }

    private static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// What went wrong in a benchmark run.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body`, failing with a `BenchError` naming `what` if it has not finished after `seconds`.
func withTimeout<T: Sendable>(_ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw BenchError("\(what) did not finish within \(Int(seconds)) s")
        }
        return value
    }
}

/// Waits until `condition` holds, polling every 10 ms; throws after `seconds`.
func waitUntil(_ seconds: Double, _ what: String, _ condition: () -> Bool) async throws {
    let deadline = monotonicNow() + UInt64(seconds * 1e9)
    while !condition() {
        if monotonicNow() > deadline { throw BenchError("timed out after \(Int(seconds)) s waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Writes progress to stderr (stdout carries the table and the JSON).
func progress(_ text: String) {
    FileHandle.standardError.write(Data("handoff-bench: \(text)\n".utf8))
}

/// A value guarded by a mutex, shared between tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) throws -> R) rethrows -> R { try mutex.withLock { try body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}

/// A small JSON reader: enough for the floor's one-object reports.
private struct JSONParser {
    let bytes: [UInt8]
    var index = 0

    mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[index]) { index += 1 }
    }

    mutating func value() throws -> JSON {
        skipSpace()
        guard index < bytes.count else { throw BenchError("unexpected end of JSON") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var fields: [(String, JSON)] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(fields)
            }
            while true {
                skipSpace()
                guard case .string(let key) = try value() else { throw BenchError("JSON object key is not a string") }
                skipSpace()
                try expect(":")
                fields.append((key, try value()))
                skipSpace()
                if try separatorOrEnd("}") { return .object(fields) }
            }
        case UInt8(ascii: "["):
            index += 1
            var values: [JSON] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(values)
            }
            while true {
                values.append(try value())
                skipSpace()
                if try separatorOrEnd("]") { return .array(values) }
            }
        case UInt8(ascii: "\""):
            index += 1
            var out: [UInt8] = []
            while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                if bytes[index] == UInt8(ascii: "\\"), index + 1 < bytes.count {
                    index += 1
                    switch bytes[index] {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "u"):
                        let hex = String(decoding: bytes[(index + 1)..<min(index + 5, bytes.count)], as: UTF8.self)
                        out.append(contentsOf: Array(String(UnicodeScalar(UInt32(hex, radix: 16) ?? 0x3F).map(Character.init) ?? "?").utf8))
                        index += 4
                    default: out.append(bytes[index])
                    }
                } else {
                    out.append(bytes[index])
                }
                index += 1
            }
            try expect("\"")
            return .string(String(decoding: out, as: UTF8.self))
        case UInt8(ascii: "t"):
            try word("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try word("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try word("null")
            return .null
        default:
            let start = index
            while index < bytes.count, "+-0123456789.eE".utf8.contains(bytes[index]) { index += 1 }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            if let int = Int(text) { return .int(int) }
            guard let number = Double(text) else { throw BenchError("bad JSON number '\(text)'") }
            return .number(number)
        }
    }

    private mutating func expect(_ character: Character) throws {
        guard index < bytes.count, bytes[index] == character.asciiValue else { throw BenchError("expected '\(character)' in JSON") }
        index += 1
    }

    private mutating func separatorOrEnd(_ end: Character) throws -> Bool {
        guard index < bytes.count else { throw BenchError("unexpected end of JSON") }
        if bytes[index] == UInt8(ascii: ",") {
            index += 1
            return false
        }
        try expect(end)
        return true
    }

    private mutating func word(_ text: String) throws {
        let utf8 = Array(text.utf8)
        guard index + utf8.count <= bytes.count, Array(bytes[index..<(index + utf8.count)]) == utf8 else {
            throw BenchError("bad JSON literal")
        }
        index += utf8.count
    }
}
