import Foundation

/// How to read states written by older versions: a chain of steps, each from one version to the next.
///
/// ```swift
/// struct CounterV1: Codable { var count: Int }                         // version 1
/// struct CounterV2: Codable { var count: Int; var owner: String }      // version 2
/// struct Counter: Codable { var total: Int64; var owner: String }      // version 3, current
///
/// var migrations = HandoffMigrations<Counter>(currentVersion: 3)
/// migrations.register(from: 1, decoding: CounterV1.self) { CounterV2(count: $0.count, owner: "unknown") }
/// migrations.register(from: 2, decoding: CounterV2.self) { Counter(total: Int64($0.count), owner: $0.owner) }
/// ```
///
/// A state written at version 1 is decoded as `CounterV1`, then fed through step 1 and step 2; one written
/// at version 2 is decoded as `CounterV2` and fed through step 2 only. The output of each step must be the
/// input type of the next, and the last one must produce `State`; a mismatch is a `migrationFailed`
/// rejection when a handoff is read, not a crash.
public struct HandoffMigrations<State: Sendable>: Sendable {
    /// The version of `State` itself: states written at it are decoded directly.
    public let currentVersion: Int
    private var steps: [Int: Step] = [:]

    /// One registered step, type-erased.
    struct Step: Sendable {
        let inputTypeName: String
        let outputTypeName: String
        let decode: @Sendable (Data, any HandoffStateCodec) throws -> any Sendable
        let migrate: @Sendable (any Sendable) throws -> any Sendable
    }

    /// A step was fed a value of another type than the one it was registered with.
    struct InputMismatch: Error {
        let expected: String
        let found: String
    }

    /// Creates migrations to `currentVersion` (≥ 0), with no steps: only that version is readable.
    public init(currentVersion: Int) {
        precondition(currentVersion >= 0, "a handoff version must not be negative")
        self.currentVersion = currentVersion
    }

    /// Registers the step from `version` to `version + 1`, replacing any step registered from `version`.
    ///
    /// - Parameters:
    ///   - version: The version this step reads; from 0 up to `currentVersion - 1`.
    ///   - decoding: The type that states written at `version` decode to.
    ///   - migrate: Turns a value of that type into the input of the next step (or, for the last step, into
    ///     `State`). Throwing rejects the handoff with `migrationFailed`.
    public mutating func register<Old: Decodable & Sendable, New: Sendable>(
        from version: Int,
        decoding: Old.Type,
        to migrate: @escaping @Sendable (Old) throws -> New
    ) {
        precondition(
            version >= 0 && version < currentVersion,
            "a migration step must start from a version between 0 and \(currentVersion - 1), not \(version)"
        )
        let inputName = String(reflecting: Old.self)
        steps[version] = Step(
            inputTypeName: inputName,
            outputTypeName: String(reflecting: New.self),
            decode: { data, codec in try codec.decode(Old.self, from: data) },
            migrate: { value in
                guard let old = value as? Old else {
                    throw InputMismatch(expected: inputName, found: String(reflecting: type(of: value)))
                }
                return try migrate(old)
            }
        )
    }

    /// Whether a state written at `version` can be read: it is the current version, or every step from it to
    /// the current version is registered.
    public func canRead(version: Int) -> Bool {
        guard version >= 0, version <= currentVersion else { return false }
        return (version..<currentVersion).allSatisfy { steps[$0] != nil }
    }

    /// The versions with no registered step out of them, below `currentVersion` (for messages).
    var missingSteps: [Int] {
        (0..<currentVersion).filter { steps[$0] == nil }
    }

    func step(from version: Int) -> Step? { steps[version] }
}

extension HandoffMigrations where State: Decodable {
    /// Decodes a state written at `version` and migrates it to the current version.
    ///
    /// - Throws: ``HandoffError`` (``HandoffError/Code/unreadableState``) with reason `unknownVersion` (newer than current, negative, or no
    ///   complete chain of steps), `undecodableState` (the bytes do not decode as the type of their version) or
    ///   `migrationFailed` (a step threw, or the chain's types do not line up).
    public func decode(
        _ data: Data,
        version: Int,
        codec: some HandoffStateCodec
    ) throws(HandoffError) -> State {
        guard canRead(version: version) else {
            throw HandoffError.unreadableState(.unknownVersion, detail: unreadableDetail(version))
        }
        if version == currentVersion {
            do {
                return try codec.decode(State.self, from: data)
            } catch {
                throw HandoffError.unreadableState(
                    .undecodableState,
                    detail: "could not decode version \(version) as \(String(reflecting: State.self)): \(error)"
                )
            }
        }
        guard let first = step(from: version) else {
            throw HandoffError.unreadableState(.unknownVersion, detail: unreadableDetail(version))
        }
        var value: any Sendable
        do {
            value = try first.decode(data, codec)
        } catch {
            throw HandoffError.unreadableState(
                .undecodableState,
                detail: "could not decode version \(version) as \(first.inputTypeName): \(error)"
            )
        }
        for from in version..<currentVersion {
            guard let step = step(from: from) else {
                throw HandoffError.unreadableState(.unknownVersion, detail: unreadableDetail(version))
            }
            do {
                value = try step.migrate(value)
            } catch let mismatch as InputMismatch {
                throw HandoffError.unreadableState(
                    .migrationFailed,
                    detail: "the step from version \(from) reads \(mismatch.expected), but the step before it "
                        + "produced \(mismatch.found)"
                )
            } catch {
                throw HandoffError.unreadableState(
                    .migrationFailed,
                    detail: "migration from version \(from) to \(from + 1) threw: \(error)"
                )
            }
        }
        guard let state = value as? State else {
            throw HandoffError.unreadableState(
                .migrationFailed,
                detail: "the last migration step produced \(String(reflecting: type(of: value))), not "
                    + String(reflecting: State.self)
            )
        }
        return state
    }

    private func unreadableDetail(_ version: Int) -> String {
        if version > currentVersion {
            return "written at version \(version), newer than this reader's version \(currentVersion)"
        }
        if version < 0 { return "written at negative version \(version)" }
        let missing = missingSteps.filter { $0 >= version }.map(String.init).joined(separator: ", ")
        return "written at version \(version); this reader (version \(currentVersion)) has no migration step "
            + "from version \(missing)"
    }
}
