import AsyncCompletion
import Foundation
import Handoff
import HandoffMQTT
import Logging
import MosquittoClient

/// One short-lived connection of the tool: a clean MQTT 5 session of its own (nothing is left on the broker when it
/// disconnects), with the prefix's topic layout and the ordering marker of docs/PROTOCOL.md §6.
struct BrokerSession: Sendable {
    let client: MQTTClient
    let topics: HandoffTopics
    /// The tool's instance id: `cli-` and a random UUID (PROTOCOL.md §1).
    let instance: String
    let timeout: Duration

    static func newInstance() -> String { "cli-\(UUID().uuidString.lowercased())" }

    /// Connects; the error of a refused or failed connect says why (unreachable, bad credentials, TLS).
    static func connect(_ options: ConnectionOptions) async throws -> BrokerSession {
        let topics = try options.topics()
        var configuration = try options.configuration()
        let instance = newInstance()
        configuration.clientID = "handoff-\(instance)"
        configuration.cleanStart = true
        configuration.sessionExpiry = .zero
        let client = try MQTTClient(configuration: configuration, logger: options.logger)
        try await client.connect()
        return BrokerSession(client: client, topics: topics, instance: instance, timeout: try options.stepTimeout())
    }

    /// Runs `body` with a connected session, and disconnects whatever happens.
    static func with<T: Sendable>(_ options: ConnectionOptions, _ body: (BrokerSession) async throws -> T) async throws -> T {
        let session = try await connect(options)
        do {
            let result = try await body(session)
            await session.client.shutdown()
            return result
        } catch {
            await session.client.shutdown()
            throw error
        }
    }

    var syncTopic: String { topics.sync(instance: instance) }

    /// The retained messages of `filters`, read up to an ordering marker (PROTOCOL.md §6): subscribes, publishes a
    /// marker on this session's sync topic after the SUBACKs, and collects what arrives before it.
    func retained(_ filters: [String]) async throws -> [MQTTMessage] {
        let messages = client.messages()
        let (client, syncTopic) = (self.client, self.syncTopic)
        return try await withTimeout("read the retained messages of \(filters.joined(separator: ", "))") {
            try await client.subscribe(syncTopic, options: MQTTSubscribeOptions(qos: .atLeastOnce))
            for filter in filters {
                try await client.subscribe(filter, options: MQTTSubscribeOptions(qos: .atLeastOnce))
            }
            let nonce = Data("marker-\(UUID().uuidString)".utf8)
            try await client.publish(syncTopic, payload: nonce, qos: .atLeastOnce)
            var found: [MQTTMessage] = []
            for await message in messages {
                if message.topic == syncTopic {
                    if message.payload == nonce { break }
                    continue
                }
                if message.retain, !message.payload.isEmpty { found.append(message) }
            }
            for filter in filters { try? await client.unsubscribe(filter) }
            return found
        }
    }

    /// The retained message on exactly `topic`, if any.
    func retained(at topic: String) async throws -> MQTTMessage? {
        try await retained([topic]).first { $0.topic == topic }
    }

    /// Publishes retained at QoS 1 and returns once the broker acknowledged it.
    func publishRetained(_ topic: String, payload: Data, properties: MQTTPublishProperties = .none) async throws {
        let client = self.client
        try await withTimeout("publish to '\(topic)'") {
            try await client.publish(topic, payload: payload, qos: .atLeastOnce, retain: true, properties: properties)
        }
    }

    /// `operation`, failing with a clear error after this session's time limit.
    func withTimeout<T: Sendable>(_ what: String, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let timeout = self.timeout
        return try await withTimeLimit(
            timeout, timeoutError: { CLIError("the broker did not answer within \(timeout): could not \(what)") }, operation)
    }
}

/// The protocol's topic levels under a prefix, for every label at once (HandoffTopics has the per-label ones).
extension HandoffTopics {
    enum Kind: String, Sendable, Codable {
        case handoff = "handoff"
        case checkpoint = "checkpoint"
        case deadLetter = "dead-letter"
    }

    static func folder(of kind: Kind) -> String {
        switch kind {
        case .handoff: "handoffs"
        case .checkpoint: "checkpoints"
        case .deadLetter: "dead-letters"
        }
    }

    /// `{prefix}/{kind}/{label level or +}/+`.
    func filter(_ kind: Kind, label: HandoffLabel?) -> String {
        "\(prefix)/\(Self.folder(of: kind))/\(label?.topicLevel ?? "+")/+"
    }

    /// The kind, label level and last level of a handoff, checkpoint or dead-letter topic under this prefix.
    func parse(_ topic: String) -> (kind: Kind, labelLevel: String, last: String)? {
        for kind in [Kind.handoff, .checkpoint, .deadLetter] {
            let start = "\(prefix)/\(Self.folder(of: kind))/"
            guard topic.hasPrefix(start) else { continue }
            let levels = topic.dropFirst(start.count).split(separator: "/", omittingEmptySubsequences: false)
            guard levels.count == 2, !levels[0].isEmpty, !levels[1].isEmpty else { return nil }
            return (kind, String(levels[0]), String(levels[1]))
        }
        return nil
    }
}
