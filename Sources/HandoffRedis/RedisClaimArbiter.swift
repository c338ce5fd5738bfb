import Foundation
import Handoff
import HandoffMQTT

/// A claim arbiter on one Redis server (docs/PROTOCOL.md §11): exactly one claimer of each handoff, whatever order the
/// broker's nodes deliver claims in.
///
/// - A waiting handoff is a field of the hash `swift-handoff/1:waiting:{label level}:{prefix}` (field: the id, value:
///   the payload verbatim), written before the handoff is published.
/// - A claim runs one Lua script, atomic on the server: read the field, delete it, remember the winner for 30 days under
///   `swift-handoff/1:winner:{label level}:{id}:{prefix}`, return the payload. Exactly one claimer gets it. A handoff the
///   store never had (published by a tool or client that does not use the store) is taken by its first claimer.
///
/// Redis runs each command and script alone, so on a single server this is linearizable. Run the server with
/// `appendonly yes` and `appendfsync always` so that an acknowledged handoff or claim survives a server crash; Redis
/// replication is asynchronous, so a failover to a replica can lose the last writes (use one primary, no failover, or
/// accept that window).
public final class RedisClaimArbiter: HandoffClaimArbiter {
    private let connection: RedisConnection
    /// Where the server is, for messages.
    public let endpoint: String

    /// The Lua script of a claim (docs/PROTOCOL.md §11; KEYS: waiting hash, winner key; ARGV: id, instance, winner TTL).
    /// Replies the stored payload (won), an empty string (won a handoff the store never had), or null (lost).
    static let takeScript = """
        local v = redis.call('HGET', KEYS[1], ARGV[1])
        if v then
          redis.call('HDEL', KEYS[1], ARGV[1])
        elseif redis.call('EXISTS', KEYS[2]) == 1 then
          return false
        else
          v = ''
        end
        redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
        return v
        """
    /// How long the store remembers who took a handoff: a copy seen again within it is not taken twice.
    static let winnerSeconds = 30 * 24 * 3600

    /// Creates an arbiter on the Redis server at `host`:`port` (it connects at the first command, and again after
    /// any failure). `timeout` bounds each command.
    public init(host: String, port: Int = 6379, timeout: Duration = .seconds(5)) {
        connection = RedisConnection(host: host, port: port, timeout: timeout)
        endpoint = "\(host):\(port)"
    }

    static func waitingKey(_ prefix: String, _ label: HandoffLabel) -> String {
        "swift-handoff/1:waiting:\(label.topicLevel):\(prefix)"
    }

    static func winnerKey(_ prefix: String, _ label: HandoffLabel, _ id: String) -> String {
        "swift-handoff/1:winner:\(label.topicLevel):\(id):\(prefix)"
    }

    public func store(prefix: String, label: HandoffLabel, id: String, payload: Data) async throws {
        do {
            _ = try await connection.send([Data("HSET".utf8), Data(Self.waitingKey(prefix, label).utf8), Data(id.utf8), payload])
        } catch {
            throw HandoffError.arbiterUnavailable(
                "could not store handoff '\(label)'/\(id) in Redis at \(endpoint): \(error)", underlying: error)
        }
    }

    public func waiting(prefix: String, label: HandoffLabel) async throws -> [(id: String, payload: Data)] {
        let reply: RedisReply
        do {
            reply = try await connection.send("HGETALL", Self.waitingKey(prefix, label))
        } catch {
            throw HandoffError.arbiterUnavailable(
                "could not list the waiting handoffs of '\(label)' in Redis at \(endpoint): \(error)", underlying: error)
        }
        guard case .array(let items?) = reply, items.count % 2 == 0 else {
            throw HandoffError.arbiterUnavailable("unexpected reply of Redis at \(endpoint) to HGETALL: \(reply)")
        }
        return stride(from: 0, to: items.count, by: 2).compactMap { index in
            guard case .bulk(let id?) = items[index], case .bulk(let payload?) = items[index + 1] else { return nil }
            return (String(decoding: id, as: UTF8.self), payload)
        }
    }

    public func take(prefix: String, label: HandoffLabel, id: String, for instance: String) async throws -> HandoffArbitration {
        let reply: RedisReply
        do {
            reply = try await connection.send(
                "EVAL", Self.takeScript, "2", Self.waitingKey(prefix, label), Self.winnerKey(prefix, label, id), id, instance,
                String(Self.winnerSeconds)
            )
        } catch let error where error.kind == .outcomeUnknown {
            throw HandoffError.claimOutcomeUnknown(
                label: label, id: try HandoffID(id),
                detail: "the claim reached Redis at \(endpoint) but its answer did not: \(error.detail)"
            )
        } catch {
            throw HandoffError.arbiterUnavailable("could not claim '\(label)'/\(id) in Redis at \(endpoint): \(error)", underlying: error)
        }
        switch reply {
        case .bulk(let payload?): return .won(payload: payload)
        case .bulk(nil): return .lost
        default: throw HandoffError.arbiterUnavailable("unexpected reply of Redis at \(endpoint) to a claim: \(reply)")
        }
    }

    public func remove(prefix: String, label: HandoffLabel, id: String) async throws {
        do {
            _ = try await connection.send("HDEL", Self.waitingKey(prefix, label), id)
        } catch {
            throw HandoffError.arbiterUnavailable(
                "could not remove handoff '\(label)'/\(id) from Redis at \(endpoint): \(error)", underlying: error)
        }
    }

    public func winner(prefix: String, label: HandoffLabel, id: String) async throws -> String? {
        let reply: RedisReply
        do {
            reply = try await connection.send("GET", Self.winnerKey(prefix, label, id))
        } catch {
            throw HandoffError.arbiterUnavailable(
                "could not read the winner of '\(label)'/\(id) in Redis at \(endpoint): \(error)", underlying: error)
        }
        guard case .bulk(let winner?) = reply else { return nil }
        return String(decoding: winner, as: UTF8.self)
    }
}
