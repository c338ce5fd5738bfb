import ArgumentParser
import Dispatch
import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient

/// `handoff watch`: a live view of rounds (PROTOCOL.md §5): a handoff opens one, the first claim is its verdict, later
/// claims lose; dead letters as they are stored and removed. Runs until SIGINT/SIGTERM (or `--duration`).
struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Watch rounds live: handoffs opened, claims, verdicts, dead letters (Ctrl-C to stop).",
        discussion: """
            Handoffs already waiting when it starts are shown as `waiting`. The tool only subscribes: it never claims. \
            Each line: local time, event, label/id, details. `--json`: one JSON object per line.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Only this label (the label itself, not its topic level).")
    var label: String?

    @Flag(help: "Also show checkpoint writes and claims, and instance statuses (births, Wills).")
    var checkpoints = false

    @Option(help: "Stop after this many seconds.")
    var duration: Double?

    @Flag(help: "One JSON object per event and line.")
    var json = false

    func run() async throws {
        let label = try label.map(parseLabel)
        let session = try await BrokerSession.connect(connection)
        let topics = session.topics
        let client = session.client
        let filters =
            [topics.filter(.handoff, label: label), topics.filter(.deadLetter, label: label)]
            + (checkpoints ? [topics.instanceFilter, topics.filter(.checkpoint, label: label)] : [])
        let messages = client.messages()
        let events = client.events()
        let nonce = Data("watch-\(UUID().uuidString)".utf8)
        do {
            try await session.withTimeout("subscribe to \(filters.joined(separator: ", "))") {
                try await client.subscribe(session.syncTopic, options: MQTTSubscribeOptions(qos: .atLeastOnce))
                for filter in filters { try await client.subscribe(filter, options: MQTTSubscribeOptions(qos: .atLeastOnce)) }
                try await client.publish(session.syncTopic, payload: nonce, qos: .atLeastOnce)
            }
        } catch {
            await client.shutdown()
            throw error
        }
        let (json, duration, watched, url) = (self.json, self.duration, filters, connection.resolvedURL)
        let watcher = Task {
            var rounds = Rounds(topics: topics, json: json)
            for await message in messages {
                if message.topic == session.syncTopic {
                    if message.payload == nonce {
                        warn("watching \(watched.joined(separator: ", ")) on \(url) (Ctrl-C to stop)")
                    }
                    continue
                }
                rounds.route(message)
            }
        }
        let connectionNotes = Task {
            for await event in events {
                switch event {
                case .disconnected(let error): warn("handoff: connection lost (\(error)); reconnecting")
                case .connected: warn("handoff: reconnected")
                case .resubscribed: break
                }
            }
        }
        // SIGINT and SIGTERM end the watch normally.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
        for source in sources {
            source.setEventHandler { watcher.cancel() }
            source.resume()
        }
        if let duration {
            Task {
                try? await Task.sleep(for: .milliseconds(Int(duration * 1_000)))
                watcher.cancel()
            }
        }
        await watcher.value
        connectionNotes.cancel()
        await client.shutdown()
    }
}

/// The state of the rounds seen so far, and how each message is shown.
struct Rounds {
    let topics: HandoffTopics
    let json: Bool
    /// Topics whose round is open: a readable handoff (or checkpoint) was seen there, no claim yet.
    private var open: Set<String> = []

    init(topics: HandoffTopics, json: Bool) {
        self.topics = topics
        self.json = json
    }

    mutating func route(_ message: MQTTMessage) {
        if let instance = topics.parseInstance(message.topic).map(String.init) {
            if message.payload.isEmpty {
                emit(
                    "instance", label: nil, key: instance, details: "status removed (stopped with no checkpoint left)",
                    fields: ["state": "removed"])
                return
            }
            guard let status = InstanceStatus.decode(message.payload, on: instance) else { return }
            let what =
                status.state == .dead
                ? "dead: connection \(status.incarnation) ended without a DISCONNECT; checkpoints released through incarnation \(status.releasedThrough)"
                : "online: connection \(status.incarnation)\(status.released > 0 ? ", released through \(status.released)" : "")"
            emit(
                "instance", label: nil, key: instance, details: what,
                fields: [
                    "state": status.state.rawValue, "incarnation": "\(status.incarnation)", "releasedThrough": "\(status.releasedThrough)",
                ])
            return
        }
        guard let (kind, level, key) = topics.parse(message.topic) else { return }
        guard let label = try? HandoffLabel(topicLevel: level) else {
            emit(
                "unreadable", label: nil, key: message.topic, details: "the label level '\(level)' is not a canonical encoding", fields: [:]
            )
            return
        }
        let properties = message.properties
        if kind == .deadLetter {
            if message.payload.isEmpty {
                emit("dead-letter-removed", label: label, key: key, details: "", fields: [:])
            } else if !message.retain {
                let info = DeadLetterInfo(properties)
                emit(
                    "dead-letter", label: label, key: key, details: "\(info.reason): \(info.detail) (by \(info.rejectedBy))",
                    fields: ["reason": info.reason, "detail": info.detail, "rejectedBy": info.rejectedBy])
            }
            return
        }
        let event = kind == .handoff ? "" : "checkpoint-"
        guard message.payload.isEmpty else {
            let item = StoredItem.read(kind: kind, topic: message.topic, label: label, key: key, message: message)
            guard let envelope = item.envelope, item.problem == nil else {
                // An unreadable message opens no round (§5 rule 1); a successor dead-letters it.
                emit(event + "unreadable", label: label, key: key, details: item.problem ?? "", fields: ["problem": item.problem ?? ""])
                return
            }
            open.insert(message.topic)
            var details = "vsn \(envelope.vsn), \(Format.size(item.size)), from \(Format.origin(envelope.origin))"
            if let incarnation = envelope.incarnation, kind == .checkpoint { details += ", incarnation \(incarnation)" }
            emit(
                event + (message.retain ? "waiting" : "opened"), label: label, key: key, details: details,
                fields: ["vsn": "\(envelope.vsn)", "size": "\(item.size)", "origin": envelope.origin.instance])
            return
        }
        guard let claimer = properties.userProperty(HandoffProperty.claimBy), !claimer.isEmpty else {
            emit(event + "cleared", label: label, key: key, details: "a clear without handoff-claim-by: not a claim", fields: [:])
            return
        }
        let purpose = properties.userProperty(HandoffProperty.claimPurpose) ?? "merge"
        if open.remove(message.topic) != nil {
            emit(
                event + "verdict", label: label, key: key, details: "won by \(claimer) (\(purpose))",
                fields: ["winner": claimer, "purpose": purpose])
        } else {
            emit(
                event + "claim", label: label, key: key,
                details:
                    "by \(claimer) (\(purpose)): not a verdict, no round open (decided already, unreadable, or opened before this watch)",
                fields: ["claimer": claimer, "purpose": purpose])
        }
    }

    private func emit(_ event: String, label: HandoffLabel?, key: String, details: String, fields: [String: String]) {
        if json {
            var object = fields
            object["event"] = event
            object["time"] = Format.timestamp(Date())
            if let label { object["label"] = label.rawValue }
            object["key"] = key
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            say(String(decoding: data, as: UTF8.self))
        } else {
            let subject = label.map { "\($0)/\(key)" } ?? key
            say([Format.clock(), pad(event, 19), subject, details].filter { !$0.isEmpty }.joined(separator: "  "))
        }
    }
}
