import CMosquitto
import Foundation

/// One line of the table: a figure of swift-handoff, the floor's counterpart, and the target it is held to.
struct Row: Sendable {
    enum Target: Sendable {
        /// swift / floor must be at most this (times, latencies).
        case ratioAtMost(Double)
        /// swift / floor must be at least this (throughputs).
        case ratioAtLeast(Double)
        /// The swift-handoff figure itself must be at most this.
        case atMost(Double, String)
        /// The swift-handoff figure itself must be at least this.
        case atLeast(Double, String)
    }

    var scenario: String
    var metric: String
    var unit: String
    var swift: Double?
    var floor: Double?
    var target: Target?

    var ratio: Double? {
        guard let swift, let floor, floor != 0 else { return nil }
        return swift / floor
    }

    var targetText: String {
        switch target {
        case nil: return ""
        case .ratioAtMost(let limit): return "≤ \(format(limit))× floor"
        case .ratioAtLeast(let limit): return "≥ \(format(limit))× floor"
        case .atMost(let limit, let note): return "≤ \(format(limit)) \(unit)\(note.isEmpty ? "" : " (\(note))")"
        case .atLeast(let limit, let note): return "≥ \(format(limit)) \(unit)\(note.isEmpty ? "" : " (\(note))")"
        }
    }

    var met: Bool? {
        switch target {
        case nil: return nil
        case .ratioAtMost(let limit): return ratio.map { $0 <= limit }
        case .ratioAtLeast(let limit): return ratio.map { $0 >= limit }
        case .atMost(let limit, _): return swift.map { $0 <= limit }
        case .atLeast(let limit, _): return swift.map { $0 >= limit }
        }
    }

    var json: JSON {
        var fields: [(String, JSON)] = [("scenario", .string(scenario)), ("metric", .string(metric)), ("unit", .string(unit))]
        fields.append(("swift_handoff", swift.map(JSON.number) ?? .null))
        fields.append(("floor", floor.map(JSON.number) ?? .null))
        fields.append(("ratio", ratio.map(JSON.number) ?? .null))
        fields.append(("target", target == nil ? .null : .string(targetText)))
        fields.append(("met", met.map(JSON.bool) ?? .null))
        return .object(fields)
    }
}

func format(_ value: Double) -> String {
    if value == value.rounded(), abs(value) < 1e9 { return String(Int(value)) }
    if abs(value) >= 100 { return String(format: "%.0f", value) }
    if abs(value) >= 10 { return String(format: "%.1f", value) }
    if abs(value) >= 1 { return String(format: "%.2f", value) }
    return String(format: "%.3f", value)
}

/// The table as Markdown (it reads as plain text in a terminal and pastes into docs/BENCHMARKS.md).
func renderTable(_ rows: [Row]) -> String {
    let header = ["scenario", "metric", "swift-handoff", "floor", "ratio", "target", "met?"]
    let body = rows.map { row -> [String] in
        [
            row.scenario,
            "\(row.metric) (\(row.unit))",
            row.swift.map(format) ?? "—",
            row.floor.map(format) ?? "—",
            row.ratio.map { String(format: "%.2f", $0) } ?? "—",
            row.targetText,
            row.met.map { $0 ? "yes" : "**NO**" } ?? "",
        ]
    }
    let widths = header.indices.map { column in ([header] + body).map { $0[column].count }.max() ?? 0 }
    func line(_ cells: [String]) -> String {
        "| " + cells.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: " | ") + " |"
    }
    let rule = "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|"
    return ([line(header), rule] + body.map(line)).joined(separator: "\n")
}

/// What this run ran on, for the report.
func machineDescription(broker: BenchBroker) -> JSON {
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let model =
        cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
        .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown"
    let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
    let memTotalKB =
        meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
        .flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
    var system = utsname()
    uname(&system)
    let kernel = withUnsafeBytes(of: &system.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    return .object([
        ("nproc", .int(ProcessInfo.processInfo.activeProcessorCount)),
        ("cpu", .string(model)),
        ("memory_gib", .number(Double(memTotalKB) / 1_048_576)),
        ("kernel", .string(kernel)),
        ("swift", .string(swiftVersion())),
        ("mosquitto", .string(broker.version)),
        ("libmosquitto", .string(libmosquittoVersion())),
    ])
}

private func swiftVersion() -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["swift", "--version"]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return "unknown" }
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return output.split(separator: "\n").first { $0.contains("Swift version") }.map(String.init) ?? "unknown"
}

private func libmosquittoVersion() -> String {
    var major: Int32 = 0
    var minor: Int32 = 0
    var revision: Int32 = 0
    _ = mosquitto_lib_version(&major, &minor, &revision)
    return "\(major).\(minor).\(revision)"
}
