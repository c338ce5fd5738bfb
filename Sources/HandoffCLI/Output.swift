import Foundation
import Handoff

/// Writes to standard output at once (also into a pipe: `watch` is read line by line).
func say(_ line: String = "") {
    FileHandle.standardOutput.write(Data("\(line)\n".utf8))
}

/// Writes one line to standard error.
func warn(_ line: String) {
    FileHandle.standardError.write(Data("\(line)\n".utf8))
}

/// `text` padded with spaces to `width` characters (never cut).
func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
func table(_ header: [String], _ rows: [[String]]) -> [String] {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { column, cell in
            column == row.count - 1 ? cell : pad(cell, widths[column])
        }.joined(separator: "  ")
    }
}

enum Format {
    /// `812 B`, `3.4 KiB`, `16.0 MiB`.
    static func size(_ bytes: Int) -> String {
        if bytes < 1024 { return "\(bytes) B" }
        if bytes < 1024 * 1024 { return String(format: "%.1f KiB", Double(bytes) / 1024) }
        return String(format: "%.1f MiB", Double(bytes) / (1024 * 1024))
    }

    /// `42s`, `5m12s`, `3h04m`, `2d05h`; `-` when unknown.
    static func age(since date: Date?, now: Date = Date()) -> String {
        guard let date, date.timeIntervalSince1970 > 0 else { return "-" }
        let seconds = max(0, Int(now.timeIntervalSince(date)))
        if seconds < 60 { return "\(seconds)s" }
        if seconds < 3600 { return "\(seconds / 60)m\(String(format: "%02d", seconds % 60))s" }
        if seconds < 86_400 { return "\(seconds / 3600)h\(String(format: "%02d", seconds % 3600 / 60))m" }
        return "\(seconds / 86_400)d\(String(format: "%02d", seconds % 86_400 / 3600))h"
    }

    /// `c0a8e1f2-… (pod-7, pid 41)`.
    static func origin(_ origin: HandoffOrigin?) -> String {
        guard let origin else { return "-" }
        let place = [origin.host, origin.pid.map { "pid \($0)" }].compactMap { $0 }
        return place.isEmpty ? origin.instance : "\(origin.instance) (\(place.joined(separator: ", ")))"
    }

    /// `2026-11-25T06:00:00.123Z`.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// `06:00:00.123`, local time, for live lines.
    static func clock(_ date: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss.SSS"
        return formatter.string(from: date)
    }

    /// Pretty-printed JSON of `data`, keys sorted; nil when it is not JSON.
    static func prettyJSON(_ data: Data) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
            let pretty = try? JSONSerialization.data(
                withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed])
        else { return nil }
        return String(decoding: pretty, as: UTF8.self)
    }

    /// Whether a content type is JSON (its media type, parameters ignored, PROTOCOL.md §7).
    static func isJSON(_ contentType: String) -> Bool {
        let media = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return media == "application/json" || media.hasSuffix("+json")
    }
}

/// Encodes `value` as JSON for scripts: sorted keys, ISO 8601 dates.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .custom { date, encoder in
        var container = encoder.singleValueContainer()
        try container.encode(Format.timestamp(date))
    }
    say(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// The JSON form of a stored item (`list --json`, `dead-letters --json`).
struct ItemJSON: Encodable {
    var kind: String
    var topic: String
    var label: String
    var id: String?
    var instance: String?
    var vsn: Int?
    var size: Int
    var createdAt: Date?
    var ageSeconds: Double?
    var origin: HandoffOrigin?
    var contentType: String?
    var incarnation: Int?
    var checkpoint: CheckpointRelease?
    var deadLetter: DeadLetterInfo?
    var problem: String?

    init(_ item: StoredItem, now: Date = Date()) {
        kind = item.kind.rawValue
        topic = item.topic
        label = item.label.rawValue
        let envelope = item.envelope
        id = item.kind == .checkpoint ? envelope?.id.rawValue : item.key
        instance = item.kind == .checkpoint ? item.key : nil
        vsn = envelope?.vsn
        size = item.size
        createdAt = envelope?.createdAt
        ageSeconds = envelope.map { (now.timeIntervalSince($0.createdAt) * 1000).rounded() / 1000 }
        origin = envelope?.origin
        contentType = envelope?.contentType
        incarnation = item.kind == .checkpoint ? envelope?.incarnation : nil
        checkpoint = item.release
        deadLetter = item.deadLetter
        problem = item.problem
    }
}
