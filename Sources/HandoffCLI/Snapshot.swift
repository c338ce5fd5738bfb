import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient

/// What one retained message on a handoff, checkpoint or dead-letter topic holds, read as PROTOCOL.md §4 says.
struct StoredItem: Sendable {
    var kind: HandoffTopics.Kind
    var topic: String
    var label: HandoffLabel
    /// The topic's last level: the handoff id, or the instance of a checkpoint (a dead letter: either).
    var key: String
    var payload: Data
    /// The envelope, when the payload is a readable one for this topic.
    var envelope: HandoffEnvelope?
    /// Why it is not, as a dead letter's reason would say (`integrity-failure: …`).
    var problem: String?
    /// A dead letter's user properties.
    var deadLetter: DeadLetterInfo?
    /// A checkpoint's instance status: held or released.
    var release: CheckpointRelease?

    var size: Int { payload.count }
}

struct DeadLetterInfo: Sendable, Codable {
    var reason: String
    var detail: String
    var rejectedBy: String
    var rejectedAt: String?
    var fromTopic: String?

    init(_ properties: MQTTPublishProperties) {
        reason = properties.userProperty(HandoffProperty.deadReason) ?? "unknown"
        detail = properties.userProperty(HandoffProperty.deadDetail) ?? ""
        rejectedBy = properties.userProperty(HandoffProperty.deadBy) ?? ""
        rejectedAt = properties.userProperty(HandoffProperty.deadAt)
        fromTopic = properties.userProperty(HandoffProperty.deadTopic)
    }
}

/// Whether a checkpoint is released to successors (PROTOCOL.md §9.3): its incarnation is at most its instance's
/// "released through".
struct CheckpointRelease: Sendable, Codable {
    /// `online`, `dead`, or nil when the instance has no (readable) status.
    var instanceState: String?
    var releasedThrough: Int
    var released: Bool
}

/// Everything retained under a prefix (or one label of it), read up to an ordering marker.
struct Snapshot: Sendable {
    var items: [StoredItem] = []
    /// Topics the tool could not read, and why (a non-canonical label level, say).
    var problems: [(topic: String, problem: String)] = []
    var statuses: [String: InstanceStatus] = [:]

    static func read(_ session: BrokerSession, label: HandoffLabel?, kinds: [HandoffTopics.Kind] = [.handoff, .checkpoint, .deadLetter])
        async throws -> Snapshot
    {
        let topics = session.topics
        var filters = kinds.map { topics.filter($0, label: label) }
        // Statuses first (A3): a checkpoint is then judged with its instance's status at hand.
        if kinds.contains(.checkpoint) { filters.insert(topics.instanceFilter, at: 0) }
        let messages = try await session.retained(filters)
        var snapshot = Snapshot()
        for message in messages {
            if let instance = topics.parseInstance(message.topic).map(String.init) {
                if let status = InstanceStatus.decode(message.payload, on: instance) { snapshot.statuses[instance] = status }
                continue
            }
            guard let (kind, level, last) = topics.parse(message.topic) else {
                snapshot.problems.append((message.topic, "not a topic of the protocol under prefix '\(topics.prefix)'"))
                continue
            }
            let decodedLabel: HandoffLabel
            do {
                decodedLabel = try HandoffLabel(topicLevel: level)
            } catch {
                snapshot.problems.append((message.topic, "the label level is not a canonical encoding (PROTOCOL.md §3): \(error)"))
                continue
            }
            snapshot.items.append(StoredItem.read(kind: kind, topic: message.topic, label: decodedLabel, key: last, message: message))
        }
        for index in snapshot.items.indices where snapshot.items[index].kind == .checkpoint {
            guard let incarnation = snapshot.items[index].envelope?.incarnation else { continue }
            let status = snapshot.statuses[snapshot.items[index].key]
            let through = status?.releasedThrough ?? 0
            snapshot.items[index].release = CheckpointRelease(
                instanceState: status?.state.rawValue, releasedThrough: through, released: incarnation <= through)
        }
        snapshot.items.sort { ($0.label.rawValue, $0.createdAt, $0.key) < ($1.label.rawValue, $1.createdAt, $1.key) }
        return snapshot
    }

    func items(_ kind: HandoffTopics.Kind) -> [StoredItem] { items.filter { $0.kind == kind } }
}

extension StoredItem {
    /// Reads a retained message by PROTOCOL.md §4 "Reading an envelope" (and §9.3 for a checkpoint).
    static func read(kind: HandoffTopics.Kind, topic: String, label: HandoffLabel, key: String, message: MQTTMessage) -> StoredItem {
        var item = StoredItem(kind: kind, topic: topic, label: label, key: key, payload: message.payload)
        if kind == .deadLetter { item.deadLetter = DeadLetterInfo(message.properties) }
        do {
            let envelope = try HandoffEnvelope.decode(message.payload)
            item.envelope = envelope
            switch kind {
            case .handoff where envelope.id.rawValue != key || envelope.label != label:
                item.problem = "label-mismatch: the envelope names '\(envelope.label)'/\(envelope.id)"
            case .checkpoint where envelope.label != label || envelope.origin.instance != key:
                item.problem = "label-mismatch: the checkpoint names '\(envelope.label)' of instance \(envelope.origin.instance)"
            case .checkpoint where envelope.incarnation == nil:
                item.problem = "label-mismatch: a checkpoint without an incarnation"
            default: break
            }
        } catch {
            item.problem = "\(error.reason.rawValue): \(error.detail)"
        }
        return item
    }

    /// When the state was made (the epoch for an unreadable payload).
    var createdAt: Date { envelope?.createdAt ?? Date(timeIntervalSince1970: 0) }
}
