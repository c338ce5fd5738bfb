import Foundation
import Testing

@Suite("examples on bad input", .timeLimit(.minutes(1)))
struct ExamplesTests {
    @Test("the examples print one line and exit 1 on a wrong broker URL or an unreachable broker (no backtrace)")
    func examples() async throws {
        let cases: [(String, [String])] = [
            ("counter-example", ["ftp://example.org"]), ("counter-example", ["mqtt://127.0.0.1:1"]),
            ("counter-example", ["mqtt://127.0.0.1:1", "bad\u{1}"]),
            ("edge-gateway", ["--broker", "ftp://example.org"]), ("edge-gateway", ["--broker", "mqtt://127.0.0.1:1"]),
            ("edge-sensors", ["--broker", "ftp://example.org"]), ("edge-sensors", ["--broker", "mqtt://127.0.0.1:1"]),
        ]
        for (product, arguments) in cases {
            let result = try await run(product, arguments)
            #expect(result.status == 1, "\(product) \(arguments): \(result)")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].hasPrefix("\(product): "), "\(product) \(arguments): \(result)")
            #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("crashed"), "\(product) \(arguments): \(result)")
        }
    }
}
