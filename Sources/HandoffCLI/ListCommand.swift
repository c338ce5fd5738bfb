import ArgumentParser
import Foundation
import Handoff

/// `handoff list`: the waiting handoffs, the checkpoints and the dead letters, read up to an ordering marker.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the waiting handoffs, the checkpoints (held or released) and the dead letters."
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Only this label (the label itself, not its topic level).")
    var label: String?

    @Flag(help: "One JSON object, for scripts.")
    var json = false

    func run() async throws {
        let label = try label.map(parseLabel)
        let snapshot = try await BrokerSession.with(connection) { try await Snapshot.read($0, label: label) }
        let now = Date()
        for problem in snapshot.problems { warn("handoff: warning: \(problem.topic): \(problem.problem)") }
        if json {
            struct Listing: Encodable {
                var handoffs: [ItemJSON]
                var checkpoints: [ItemJSON]
                var deadLetters: [ItemJSON]
                var unreadableTopics: [[String: String]]
            }
            try printJSON(
                Listing(
                    handoffs: snapshot.items(.handoff).map { ItemJSON($0, now: now) },
                    checkpoints: snapshot.items(.checkpoint).map { ItemJSON($0, now: now) },
                    deadLetters: snapshot.items(.deadLetter).map { ItemJSON($0, now: now) },
                    unreadableTopics: snapshot.problems.map { ["topic": $0.topic, "problem": $0.problem] }
                )
            )
            return
        }
        for line in Listing.lines(snapshot, now: now) { say(line) }
    }
}

/// The tables of `list` and `dead-letters`.
enum Listing {
    static func lines(_ snapshot: Snapshot, now: Date) -> [String] {
        var lines: [String] = []
        let handoffs = snapshot.items(.handoff)
        lines.append("HANDOFFS WAITING (\(handoffs.count))")
        if !handoffs.isEmpty {
            lines += table(
                ["LABEL", "ID", "VSN", "SIZE", "AGE", "ORIGIN"],
                handoffs.map { item in
                    [
                        item.label.rawValue, item.key, vsn(item), Format.size(item.size),
                        Format.age(since: item.envelope?.createdAt, now: now),
                        item.problem.map { "UNREADABLE \($0)" } ?? Format.origin(item.envelope?.origin),
                    ]
                }
            ).map { "  " + $0 }
        }
        let checkpoints = snapshot.items(.checkpoint)
        lines.append("CHECKPOINTS (\(checkpoints.count))")
        if !checkpoints.isEmpty {
            lines += table(
                ["LABEL", "INSTANCE", "INCARNATION", "STATUS", "ID", "VSN", "SIZE", "AGE", "ORIGIN"],
                checkpoints.map { item in
                    [
                        item.label.rawValue, item.key, item.envelope?.incarnation.map(String.init) ?? "-", status(item),
                        item.envelope?.id.rawValue ?? "-", vsn(item), Format.size(item.size),
                        Format.age(since: item.envelope?.createdAt, now: now),
                        item.problem.map { "UNREADABLE \($0)" } ?? Format.origin(item.envelope?.origin),
                    ]
                }
            ).map { "  " + $0 }
        }
        lines += deadLetterLines(snapshot.items(.deadLetter), now: now)
        return lines
    }

    static func deadLetterLines(_ letters: [StoredItem], now: Date) -> [String] {
        var lines = ["DEAD LETTERS (\(letters.count))"]
        guard !letters.isEmpty else { return lines }
        lines += table(
            ["LABEL", "ID", "REASON", "VSN", "SIZE", "AGE", "ORIGIN"],
            letters.map { item in
                [
                    item.label.rawValue, item.key, item.deadLetter?.reason ?? "-", vsn(item), Format.size(item.size),
                    Format.age(since: item.envelope?.createdAt, now: now), Format.origin(item.envelope?.origin),
                ]
            }
        ).map { "  " + $0 }
        return lines
    }

    static func vsn(_ item: StoredItem) -> String { item.envelope.map { String($0.vsn) } ?? "-" }

    /// `held (online)`, `released (dead)`, `held (no status)`.
    static func status(_ item: StoredItem) -> String {
        guard let release = item.release else { return "-" }
        return "\(release.released ? "released" : "held") (\(release.instanceState ?? "no status"))"
    }
}
