import ArgumentParser
import Foundation
import Logging

/// `swift run -c release handoff-bench`: how fast a handoff is, against the floor of libmosquitto and the broker,
/// measured in the same run (docs/BENCHMARKS.md).
@main
struct HandoffBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff-bench",
        abstract: "Benchmarks swift-handoff against a bare libmosquitto floor on a private mosquitto.",
        subcommands: [Run.self, RoleCommand.self],
        defaultSubcommand: Run.self
    )
}

enum Scenario: String, CaseIterable, ExpressibleByArgument {
    case latency, bulk, durable, large, contention, crash
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Runs the scenarios (all by default) and prints a table and one JSON object."
    )

    @Option(help: "Comma-separated scenarios: latency,bulk,durable,large,contention,crash.")
    var scenarios: String = Scenario.allCases.map(\.rawValue).joined(separator: ",")

    @Option(help: "latency: handoffs measured (default 2000; --quick 100).")
    var count: Int?

    @Option(help: "latency: warm-up handoffs before measuring (default 200; --quick 20).")
    var warmup: Int?

    @Option(help: "latency, bulk, contention: bytes of the state's JSON (default 1024).")
    var stateSize: Int = 1024

    @Option(help: "bulk: labels handed off at shutdown (default 10000; --quick 300).")
    var labels: Int?

    @Option(help: "durable: labels handed off at shutdown on the durable broker (default 10000; --quick 300).")
    var durableLabels: Int?

    @Option(help: "large: bytes of the state's JSON (default 16777216; --quick 1048576).")
    var size: Int?

    @Option(help: "large: rounds (default 3).")
    var rounds: Int?

    @Option(help: "large: codecs of the state, comma-separated: json (swift-handoff's default), raw (bytes as is).")
    var codecs: String = "json,raw"

    @Option(help: "contention: successors racing (default 16; --quick 4).")
    var successors: Int?

    @Option(help: "contention: handoffs, half retained and half live (default 1000; --quick 40).")
    var handoffs: Int?

    @Option(help: "contention: microseconds between live handoffs (default 10000).")
    var paceUs: Int = 10_000

    @Option(help: "crash: labels checkpointed by the predecessor that is SIGKILLed (default 1000; --quick 100).")
    var crashLabels: Int?

    @Option(help: "crash: SIGKILLed predecessors, one after another (default 5; --quick 2).")
    var crashRepetitions: Int?

    @Option(help: "crash: labels of the checkpoint-cost rounds (default 10000; --quick 1000).")
    var checkpointLabels: Int?

    @Option(help: "crash: the Will delay of the predecessor, seconds (default 1).")
    var willDelay: UInt32 = 1

    @Flag(help: "Tiny sizes for a smoke run (CI): under a minute.")
    var quick = false

    @Option(help: "Also write the JSON object to this file.")
    var json: String?

    @Option(help: "The handoff-floor executable (default: next to this one).")
    var floor: String?

    @Flag(help: "Skip the floor (for profiling swift-handoff alone); no ratios.")
    var swiftOnly = false

    @Option(help: "Bound on each scenario side, in seconds.")
    var timeout: Double = 300

    func run() async throws {
        bootstrapLogging()
        ChildProcesses.installSignalHandlers()
        var selected: [Scenario] = []
        for name in scenarios.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
            guard let scenario = Scenario(rawValue: name) else {
                throw ValidationError("unknown scenario '\(name)'; choose from \(Scenario.allCases.map(\.rawValue).joined(separator: ","))")
            }
            selected.append(scenario)
        }
        let parameters = Parameters(
            latencyCount: count ?? (quick ? 100 : 2000),
            warmup: warmup ?? (quick ? 20 : 200),
            stateSize: stateSize,
            labels: labels ?? (quick ? 300 : 10_000),
            durableLabels: durableLabels ?? (quick ? 300 : 10_000),
            largeSize: size ?? (quick ? 1 << 20 : 16 << 20),
            rounds: rounds ?? 3,
            successors: successors ?? (quick ? 4 : 16),
            handoffs: handoffs ?? (quick ? 40 : 1000),
            paceMicroseconds: quick && paceUs == 10_000 ? 2_000 : paceUs,
            crashLabels: crashLabels ?? (quick ? 100 : 1000),
            crashRepetitions: crashRepetitions ?? (quick ? 2 : 5),
            checkpointLabels: checkpointLabels ?? (quick ? 1000 : 10_000),
            willDelay: willDelay
        )
        let floorExecutable = try FloorRunner.locate(floor)
        let broker = try await BenchBroker.start()
        defer { broker.stop() }
        progress("mosquitto (\(broker.version)) on \(broker.host):\(broker.port)")
        let runID = "\(getpid())-\(monotonicNow())"
        /// The context of a scenario on `broker`: the run's id, the floor and swift-handoff both against that broker.
        func scenarioContext(on broker: BenchBroker) -> BenchContext {
            BenchContext(
                host: broker.host, port: broker.port, runID: runID,
                floor: FloorRunner(executable: floorExecutable, host: broker.host, port: broker.port, skip: swiftOnly), timeout: timeout
            )
        }
        let context = scenarioContext(on: broker)
        let started = monotonicNow()
        var results: [ScenarioResult] = []
        for scenario in selected {
            switch scenario {
            case .latency:
                results.append(
                    try await LatencyScenario(
                        context: context, count: parameters.latencyCount, warmup: parameters.warmup, size: parameters.stateSize
                    ).run())
            case .bulk:
                results.append(try await BulkScenario(context: context, labels: parameters.labels, size: parameters.stateSize).run())
            case .durable:
                // A broker of its own with the repository's durability settings (the store saved after every change).
                let durableBroker = try await BenchBroker.start(durable: true)
                defer { durableBroker.stop() }
                progress(
                    "durable: mosquitto with \(BenchBroker.durableSettings.joined(separator: ", ")) on \(durableBroker.host):\(durableBroker.port)"
                )
                results.append(
                    try await BulkScenario(
                        context: scenarioContext(on: durableBroker), labels: parameters.durableLabels, size: parameters.stateSize,
                        durable: true
                    ).run()
                )
            case .large:
                var codecList: [BenchCodec] = []
                for name in codecs.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
                    guard let codec = BenchCodec(rawValue: name) else {
                        throw ValidationError("unknown codec '\(name)'; choose json or raw")
                    }
                    codecList.append(codec)
                }
                results.append(
                    try await LargeScenario(context: context, size: parameters.largeSize, rounds: parameters.rounds, codecs: codecList)
                        .run())
            case .contention:
                results.append(
                    try await ContentionScenario(
                        context: context, count: parameters.handoffs, successors: parameters.successors, size: parameters.stateSize,
                        paceMicroseconds: parameters.paceMicroseconds
                    ).run()
                )
            case .crash:
                // A broker of its own: the same settings, plus $SYS updates (the broker's byte counters).
                let crashBroker = try await BenchBroker.start(extraSettings: CrashScenario.brokerSettings)
                defer { crashBroker.stop() }
                progress(
                    "crash: mosquitto with \(CrashScenario.brokerSettings.joined(separator: ", ")) on \(crashBroker.host):\(crashBroker.port)"
                )
                results.append(
                    try await CrashScenario(
                        context: scenarioContext(on: crashBroker), labels: parameters.crashLabels, repetitions: parameters.crashRepetitions,
                        checkpointLabels: parameters.checkpointLabels, size: parameters.stateSize, willDelay: parameters.willDelay,
                        brokerConfiguration: crashBroker.configuration
                    ).run()
                )
            }
        }
        let rows = results.flatMap(\.rows)
        let report = JSON.object([
            ("benchmark", .string("handoff-bench")),
            ("date", .string(ISO8601DateFormatter().string(from: Date()))),
            ("machine", machineDescription(broker: broker)),
            ("broker", .object([("config", .array(broker.configuration.map(JSON.string)))])),
            ("parameters", parameters.json(quick: quick)),
            ("duration_s", .number(Double(monotonicNow() - started) / 1e9)),
            ("scenarios", .object(results.map { ($0.name, $0.json) })),
            ("table", .array(rows.map(\.json))),
            ("targets_met", .bool(rows.allSatisfy { $0.met != false })),
        ])
        print(renderTable(rows))
        print()
        print(report.serialized())
        if let json {
            try (report.serialized(indent: 2) + "\n").write(toFile: json, atomically: true, encoding: .utf8)
            progress("wrote \(json)")
        }
    }
}

struct Parameters {
    var latencyCount: Int
    var warmup: Int
    var stateSize: Int
    var labels: Int
    var durableLabels: Int
    var largeSize: Int
    var rounds: Int
    var successors: Int
    var handoffs: Int
    var paceMicroseconds: Int
    var crashLabels: Int
    var crashRepetitions: Int
    var checkpointLabels: Int
    var willDelay: UInt32

    func json(quick: Bool) -> JSON {
        .object([
            ("quick", .bool(quick)),
            ("latency_count", .int(latencyCount)),
            ("latency_warmup", .int(warmup)),
            ("state_size", .int(stateSize)),
            ("bulk_labels", .int(labels)),
            ("durable_labels", .int(durableLabels)),
            ("large_size", .int(largeSize)),
            ("large_rounds", .int(rounds)),
            ("contention_successors", .int(successors)),
            ("contention_handoffs", .int(handoffs)),
            ("contention_pace_us", .int(paceMicroseconds)),
            ("crash_labels", .int(crashLabels)),
            ("crash_repetitions", .int(crashRepetitions)),
            ("checkpoint_labels", .int(checkpointLabels)),
            ("will_delay_s", .int(Int(willDelay))),
        ])
    }
}

/// `handoff-bench role …`: a process of its own for one side of a scenario (used by the bench itself).
struct RoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "role", abstract: "One side of a scenario, run by the bench.", shouldDisplay: false)

    enum Role: String, ExpressibleByArgument {
        case largePredecessor = "large-predecessor"
        case largeSuccessor = "large-successor"
        case crashPredecessor = "crash-predecessor"
    }

    @Argument var role: Role
    @Option var codec: String = "json"
    @Option var host: String
    @Option var port: Int
    @Option var prefix: String
    @Option var size: Int
    @Option var rounds: Int = 1
    @Option var labels: Int = 1
    @Option var willDelay: UInt32 = 1
    @Option var seq: Int = 0

    func run() async throws {
        bootstrapLogging()
        guard let codec = BenchCodec(rawValue: codec) else { throw ValidationError("unknown codec '\(codec)'") }
        switch role {
        case .largePredecessor:
            try await LargeRoles.predecessor(host: host, port: port, prefix: prefix, size: size, rounds: rounds, codec: codec)
        case .largeSuccessor:
            try await LargeRoles.successor(host: host, port: port, prefix: prefix, size: size, rounds: rounds, codec: codec)
        case .crashPredecessor:
            try await CrashRoles.predecessor(
                host: host, port: port, prefix: prefix, labels: labels, size: size, willDelay: willDelay, seq: seq)
        }
    }
}

/// The library logs to a `Logger`; the bench shows warnings and errors on stderr only.
func bootstrapLogging() {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = .warning
        return handler
    }
}
