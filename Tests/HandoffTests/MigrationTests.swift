import Foundation
import Handoff
import HandoffTestSupport
import Testing

/// Version 1 of a counter's state.
struct CounterV1: Codable, Sendable, Equatable { var count: Int }
/// Version 2.
struct CounterV2: Codable, Sendable, Equatable {
    var count: Int
    var owner: String
}
/// Version 3, current.
struct Counter: Codable, Sendable, Equatable {
    var total: Int64
    var owner: String
    var migrated: Bool
}

struct MigrationRefused: Error, CustomStringConvertible {
    var description: String { "negative counts cannot be migrated" }
}

func counterMigrations() -> HandoffMigrations<Counter> {
    var migrations = HandoffMigrations<Counter>(currentVersion: 3)
    migrations.register(from: 1, decoding: CounterV1.self) { old in
        guard old.count >= 0 else { throw MigrationRefused() }
        return CounterV2(count: old.count, owner: "unknown")
    }
    migrations.register(from: 2, decoding: CounterV2.self) { old in
        Counter(total: Int64(old.count), owner: old.owner, migrated: true)
    }
    return migrations
}

func json(_ value: some Encodable) throws -> Data { try JSONEncoder().encode(value) }

@Suite("Versions and migrations")
struct MigrationTests {
    let codec = JSONStateCodec()

    @Test("v1 goes through both steps, v2 through the last, v3 is read directly")
    func chain() throws {
        let migrations = counterMigrations()
        #expect(
            try migrations.decode(json(CounterV1(count: 4)), version: 1, codec: codec)
                == Counter(total: 4, owner: "unknown", migrated: true))
        #expect(
            try migrations.decode(json(CounterV2(count: 5, owner: "b")), version: 2, codec: codec)
                == Counter(total: 5, owner: "b", migrated: true))
        let current = Counter(total: 6, owner: "c", migrated: false)
        #expect(try migrations.decode(json(current), version: 3, codec: codec) == current)
    }

    @Test("readable versions")
    func canRead() {
        let migrations = counterMigrations()
        #expect(migrations.canRead(version: 1) && migrations.canRead(version: 2) && migrations.canRead(version: 3))
        #expect(!migrations.canRead(version: 0) && !migrations.canRead(version: 4) && !migrations.canRead(version: -1))
        var partial = HandoffMigrations<Counter>(currentVersion: 3)
        partial.register(from: 2, decoding: CounterV2.self) { Counter(total: Int64($0.count), owner: $0.owner, migrated: true) }
        #expect(!partial.canRead(version: 1) && partial.canRead(version: 2))
        #expect(HandoffMigrations<Counter>(currentVersion: 7).canRead(version: 7))
    }

    @Test("errors tell unknown versions, undecodable states and failed migrations apart")
    func errors() throws {
        let migrations = counterMigrations()
        func reason(_ data: Data, _ version: Int, _ migrations: HandoffMigrations<Counter>) -> HandoffError? {
            do {
                _ = try migrations.decode(data, version: version, codec: codec)
                return nil
            } catch {
                return error
            }
        }
        let v1 = try json(CounterV1(count: 1))
        #expect(reason(v1, 4, migrations)?.reason == .unknownVersion)
        #expect(reason(v1, 4, migrations)?.detail.contains("newer") == true)
        #expect(reason(v1, 0, migrations)?.reason == .unknownVersion)
        #expect(reason(Data("{}".utf8), 1, migrations)?.reason == .undecodableState)
        #expect(reason(Data("not json".utf8), 3, migrations)?.reason == .undecodableState)
        let refused = reason(try json(CounterV1(count: -1)), 1, migrations)
        #expect(refused?.reason == .migrationFailed)
        #expect(refused?.detail.contains("negative counts cannot be migrated") == true)

        // A step whose output is not the next step's input.
        var mismatched = HandoffMigrations<Counter>(currentVersion: 3)
        mismatched.register(from: 1, decoding: CounterV1.self) { $0.count }
        mismatched.register(from: 2, decoding: CounterV2.self) { Counter(total: Int64($0.count), owner: $0.owner, migrated: true) }
        let mismatch = reason(v1, 1, mismatched)
        #expect(mismatch?.reason == .migrationFailed)
        #expect(mismatch?.detail.contains("CounterV2") == true)

        // A last step that does not produce the state type.
        var wrongEnd = HandoffMigrations<Counter>(currentVersion: 2)
        wrongEnd.register(from: 1, decoding: CounterV1.self) { CounterV2(count: $0.count, owner: "x") }
        #expect(reason(v1, 1, wrongEnd)?.reason == .migrationFailed)
    }
}
