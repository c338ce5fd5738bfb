import EdgeGatewayKit
import Foundation

/// What both scenarios share: the run's folder of status, report and log files, the gateways and the sensors as
/// child processes, and the per-sensor table at the end.
final class DemoRun {
    /// The broker's plain MQTT URL.
    let brokerURL: String
    /// Where the programs write their status, reports and logs (removed after a successful run).
    let folder: URL
    /// Every program started, to kill whatever still runs at the end.
    private(set) var children: [ChildProgram] = []

    /// Creates the run's folder.
    init(brokerURL: String) throws {
        self.brokerURL = brokerURL
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("handoff-demo-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    /// The path of `name` in the run's folder.
    func file(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// The live status of the gateway with `role`, if it has written one.
    func status(_ role: String) -> GatewayStatus? { JSONFile.read(GatewayStatus.self, from: file("\(role)-status.json")) }

    /// Starts an edge-gateway with `role` (`primary` or `standby`) and `extraArguments`, and waits until it
    /// consumes telemetry (`waitUntilActive`) or has written its first status.
    func startGateway(_ role: String, extraArguments: [String] = [], waitUntilActive: Bool) async throws -> ChildProgram {
        let gateway = try start(
            role,
            product: "edge-gateway",
            arguments: [
                "--broker", brokerURL, "--gateway-id", "demo", "--role", role,
                "--status", file("\(role)-status.json"), "--report", file("\(role)-report.json"),
            ] + extraArguments
        )
        let started = await waitUntil(upTo: .seconds(15)) {
            guard let status = self.status(role) else { return false }
            return !waitUntilActive || status.active
        }
        guard started else {
            throw DemoFailure(
                (waitUntilActive ? "the \(role) did not start consuming telemetry:\n" : "the \(role) did not start:\n") + gateway.logTail()
            )
        }
        return gateway
    }

    /// Starts the simulated sensors.
    func startSensors(count: Int, rate: Int) throws -> ChildProgram {
        try start(
            "sensors",
            product: "edge-sensors",
            arguments: ["--broker", brokerURL, "--sensors", "\(count)", "--rate", "\(rate)", "--report", file("sent.json")]
        )
    }

    /// Stops the sensors; the readings each one got acknowledged.
    func stopSensors(_ sensors: ChildProgram) async throws -> [String: Int] {
        sensors.send(SIGTERM)
        guard await sensors.waitForExit() == 0, let sent = JSONFile.read(SensorsReport.self, from: file("sent.json"))?.sent else {
            throw DemoFailure("the sensors did not stop cleanly:\n\(sensors.logTail())")
        }
        return sent
    }

    /// Lets the standby count what the broker queued up to each sensor's last reading `sent`, then stops it; its
    /// final report.
    func drainAndStop(_ standby: ChildProgram, sent: [String: Int]) async throws -> GatewayReport {
        _ = await waitUntil(upTo: .seconds(15)) {
            let lastSeq = self.status("standby")?.lastSeq ?? [:]
            return sent.allSatisfy { sensor, count in (lastSeq[sensor] ?? 0) >= count }
        }
        standby.send(SIGTERM)
        guard await standby.waitForExit() == 0, let final = JSONFile.read(GatewayReport.self, from: file("standby-report.json")) else {
            throw DemoFailure("the standby did not stop cleanly:\n\(standby.logTail())")
        }
        return final
    }

    /// Prints, per sensor, the readings sent and what the `final` records counted, marking the sensors whose
    /// figures are not `expected`; whether all are (and the gateway knows exactly the sensors that sent).
    func printTable(sent: [String: Int], final: GatewayState, expected: (_ sent: Int, _ stats: SensorStats) -> Bool) -> Bool {
        say("sensor        sent  counted  duplicates skipped  missing")
        var allMatch = Set(sent.keys) == Set(final.keys)
        for sensor in sent.keys.sorted() {
            let stats = final[sensor] ?? SensorStats()
            let match = expected(sent[sensor] ?? 0, stats)
            allMatch = allMatch && match
            say(
                "\(sensor.padding(toLength: 12, withPad: " ", startingAt: 0))"
                    + "\(String(format: "%6d  %7d  %18d  %7d", sent[sensor] ?? 0, stats.count, stats.duplicates, stats.missing))"
                    + (match ? "" : "   MISMATCH")
            )
        }
        say("total       \(String(format: "%6d  %7d", sent.values.reduce(0, +), final.totalReadings))")
        return allMatch
    }

    /// Kills every program still running.
    func killChildren() {
        for child in children { child.killIfRunning() }
    }

    private func start(_ name: String, product: String, arguments: [String]) throws -> ChildProgram {
        let child = try ChildProgram(name, product: product, arguments: arguments, logDirectory: folder)
        children.append(child)
        return child
    }
}
