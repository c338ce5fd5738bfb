/// Polls `condition` every few milliseconds until it holds, up to `limit`; returns whether it did. For tests that wait
/// for something a broker or another process does.
public func eventually(upTo limit: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while true {
        if try await condition() { return true }
        if clock.now >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(5))
    }
}
