// swift-handoff in one screen: a counter that survives restarts and rolling deploys.
// Run two of them against a broker (`counter-example mqtt://127.0.0.1:1883 my-counter`), stop one with SIGTERM or
// Ctrl-C, and the other one (or the next one started) continues from its count.
// With `--checkpoint-ms 200` it also survives `kill -9`: the others continue from its last checkpoint, released by the
// broker's Will `--will-delay` seconds (default 5) after the connection died.
import Foundation
import Handoff
import HandoffService
import Logging
import MosquittoClient
import ServiceLifecycle

/// Prints a line at once, also into a pipe.
func say(_ line: String) { FileHandle.standardOutput.write(Data("\(line)\n".utf8)) }

/// Ends the program with one line on standard error and status 1 (a wrong URL or label: no backtrace).
func fail(_ error: any Error) -> Never {
    FileHandle.standardError.write(Data("counter-example: \(error)\n".utf8))
    exit(1)
}

/// 1. Adopt HandoffParticipant: a label, the state, and how handoffs merge (here: each one is added, once).
actor Counter: HandoffParticipant {
    nonisolated let handoffLabel: HandoffLabel
    var handoffState = 0
    static let handoffMergeStrategy = FoldStrategy<Int> { count, handoff in count + handoff.state }

    init(label: HandoffLabel) { handoffLabel = label }

    func increment() -> Int {
        handoffState += 1
        return handoffState
    }

    func didMergeHandoffs(_ handoffs: [ClaimedHandoff<Int>]) {
        let from = handoffs.contains(where: \.isCheckpoint) ? " from a checkpoint" : ""
        say("took over \(handoffs.map(\.state))\(from): count is now \(handoffState)")
    }

    func handoffOwnershipLost(_ fencing: HandoffFencing) {
        say("fenced: \(fencing.reason)")
    }
}

/// The application's own work: count every 100 ms, starting on top of whatever was handed over.
struct Ticker: Service {
    let counter: Counter
    let handoffs: HandoffService

    func run() async throws {
        await handoffs.waitUntilReady()
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: .milliseconds(100))
                say("count \(await counter.increment())")
            }
        }
    }
}

/// `counter-example [URL] [LABEL] [--checkpoint-ms N] [--will-delay S]`
/// Takes `--name N` out of `arguments`; returns N.
func option(_ name: String, from arguments: inout [String]) -> Int? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    defer { arguments.removeSubrange(index...(index + 1)) }
    return Int(arguments[index + 1])
}
var arguments = Array(CommandLine.arguments.dropFirst())
let checkpointMilliseconds = option("--checkpoint-ms", from: &arguments)
let willDelay = Duration.seconds(option("--will-delay", from: &arguments) ?? 5)
let counter: Counter
do { counter = Counter(label: try HandoffLabel(arguments.dropFirst().first ?? "counter")) } catch { fail(error) }
// 2. One broker connection per process, first in the group so that it closes last.
let connection: MQTTHandoffTransportService
do {
    connection = try await MQTTHandoffTransportService.connect(
        configuration: try MQTTConfiguration(url: arguments.first ?? "mqtt://127.0.0.1:1883"),
        options: .init(willDelay: willDelay)
    )
} catch {
    fail(error)
}
// 3. The handoff service: merges what arrives, hands the count off at SIGTERM within 5 s (and, with
// --checkpoint-ms, checkpoints it so that a crash loses at most that much).
let handoffs = HandoffService(
    transport: connection.transport,
    participants: [counter],
    configuration: .init(shutdownBudget: .seconds(5), checkpointInterval: checkpointMilliseconds.map { .milliseconds($0) })
)
let group = ServiceGroup(
    services: [connection, handoffs, Ticker(counter: counter, handoffs: handoffs)],
    gracefulShutdownSignals: [.sigterm, .sigint],
    logger: Logger(label: "counter")
)
do { try await group.run() } catch { fail(error) }
say("handed off count \(await counter.handoffState): \(handoffs.shutdownReport?.outcomes.first?.description ?? "-")")
