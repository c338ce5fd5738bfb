// handoff-demo: the edge gateway example end to end, with real processes, a real SIGTERM and a real broker.
//
// It starts a private mosquitto (broker/mosquitto.conf, on free loopback ports), an edge-gateway primary and
// standby and the simulated sensors as child processes; after a few seconds of telemetry it sends the primary
// SIGTERM, waits for the standby to take over, lets readings flow a little longer, stops the sensors and
// compares, per sensor, the readings sent with the readings the gateways counted. Exit status 0 only when every
// reading was counted exactly once.
//
//   handoff-demo [--sensors 5] [--rate 20] [--before 3] [--after 2]     (rate per sensor per second, seconds)
import EdgeGatewayKit
import Foundation
import MosquittoTestKit

func say(_ line: String = "") { FileHandle.standardOutput.write(Data("\(line)\n".utf8)) }

func milliseconds(_ seconds: Double) -> String { String(format: "%.1f ms", seconds * 1_000) }

let options = try Options(Array(CommandLine.arguments.dropFirst()))
let sensorCount = try options.int("sensors", default: 5)
let rate = try options.int("rate", default: 20)
let before = try options.int("before", default: 3)
let after = try options.int("after", default: 2)
let run = FileManager.default.temporaryDirectory.appendingPathComponent("handoff-demo-\(UUID().uuidString.prefix(8))")
try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
func file(_ name: String) -> String { run.appendingPathComponent(name).path }

say("swift-handoff demo: an IoT edge gateway hands its state to its standby on SIGTERM")
say()
let broker = try await MosquittoBroker.start()
var children: [ChildProgram] = []
var succeeded = false
do {
    say("broker    private mosquitto from broker/mosquitto.conf at \(broker.plainURL)")
    let gateway = ["--broker", broker.plainURL, "--gateway-id", "demo"]
    let primary = try ChildProgram(
        "primary",
        product: "edge-gateway",
        arguments: gateway + ["--role", "primary", "--status", file("primary-status.json"), "--report", file("primary-report.json")],
        logDirectory: run
    )
    children.append(primary)
    guard await waitUntil(upTo: .seconds(15), { JSONFile.read(GatewayStatus.self, from: file("primary-status.json"))?.active == true }) else {
        throw DemoFailure("the primary did not start consuming telemetry:\n\(primary.logTail())")
    }
    say("primary   edge-gateway pid \(primary.pid): consuming telemetry (persistent session edge-gateway-demo-telemetry)")

    let standby = try ChildProgram(
        "standby",
        product: "edge-gateway",
        arguments: gateway + ["--role", "standby", "--status", file("standby-status.json"), "--report", file("standby-report.json")],
        logDirectory: run
    )
    children.append(standby)
    guard await waitUntil(upTo: .seconds(15), { JSONFile.read(GatewayStatus.self, from: file("standby-status.json")) != nil }) else {
        throw DemoFailure("the standby did not start:\n\(standby.logTail())")
    }
    say("standby   edge-gateway pid \(standby.pid): waiting for a handoff")

    let sensors = try ChildProgram(
        "sensors",
        product: "edge-sensors",
        arguments: ["--broker", broker.plainURL, "--sensors", "\(sensorCount)", "--rate", "\(rate)", "--report", file("sent.json")],
        logDirectory: run
    )
    children.append(sensors)
    say("sensors   edge-sensors pid \(sensors.pid): \(sensorCount) sensors x \(rate) readings/s, numbered, QoS 1")
    try await Task.sleep(for: .seconds(before))
    let countedBefore = JSONFile.read(GatewayStatus.self, from: file("primary-status.json"))?.counted.values.reduce(0, +) ?? 0
    say("          ... \(before) s of telemetry: the primary has counted about \(countedBefore) readings")
    say()

    // The handoff.
    let sigtermAt = Date().timeIntervalSince1970
    primary.send(SIGTERM)
    say("SIGTERM   sent to the primary (pid \(primary.pid))")
    guard let primaryStatus = await primary.waitForExit() else {
        throw DemoFailure("the primary did not exit after SIGTERM:\n\(primary.logTail())")
    }
    guard primaryStatus == 0, let primaryReport = JSONFile.read(GatewayReport.self, from: file("primary-report.json")),
        let handedOff = primaryReport.handedOff, handedOff.outcome == "handed-off"
    else {
        throw DemoFailure("the primary exited with status \(primaryStatus) without handing off:\n\(primary.logTail())")
    }
    say("primary   exited 0 after handing off label '\(handedOff.label)'")
    say("          handoff \(handedOff.handoffID ?? "?"): \(handedOff.bytes ?? 0) bytes of state, \(handedOff.readings) readings of \(primaryReport.sensors.count) sensors")
    if let ms = handedOff.sigtermToAcknowledgedMs {
        say("          in the primary, SIGTERM received -> telemetry detached, state handed off, broker acknowledged: \(String(format: "%.1f ms", ms))")
    }
    guard await waitUntil(upTo: .seconds(15), { JSONFile.read(GatewayStatus.self, from: file("standby-status.json"))?.active == true }),
        let takeover = JSONFile.read(GatewayStatus.self, from: file("standby-status.json"))?.takeover
    else {
        throw DemoFailure("the standby did not take over:\n\(standby.logTail())")
    }
    say("standby   merged handoff \(takeover.handoffID) (\(takeover.readings) readings) and attached to the telemetry session")
    say("          SIGTERM to the primary -> standby merged its state: \(milliseconds(takeover.mergedAt - sigtermAt))")
    try await Task.sleep(for: .seconds(after))

    // Stop the sensors, let the standby count everything the broker queued, then stop it too.
    sensors.send(SIGTERM)
    guard await sensors.waitForExit() == 0, let sent = JSONFile.read(SensorsReport.self, from: file("sent.json"))?.sent else {
        throw DemoFailure("the sensors did not stop cleanly:\n\(sensors.logTail())")
    }
    let totalSent = sent.values.reduce(0, +)
    _ = await waitUntil(upTo: .seconds(15)) {
        (JSONFile.read(GatewayStatus.self, from: file("standby-status.json"))?.counted.values.reduce(0, +) ?? 0) >= totalSent
    }
    standby.send(SIGTERM)
    guard await standby.waitForExit() == 0, let final = JSONFile.read(GatewayReport.self, from: file("standby-report.json")) else {
        throw DemoFailure("the standby did not stop cleanly:\n\(standby.logTail())")
    }
    say()
    say("sensor        sent  counted  duplicates skipped  missing")
    var allMatch = Set(sent.keys) == Set(final.sensors.keys)
    for sensor in sent.keys.sorted() {
        let stats = final.sensors[sensor] ?? SensorStats()
        let match = stats.count == sent[sensor] && stats.missing == 0
        allMatch = allMatch && match
        say(
            "\(sensor.padding(toLength: 12, withPad: " ", startingAt: 0))"
                + "\(String(format: "%6d  %7d  %18d  %7d", sent[sensor] ?? 0, stats.count, stats.duplicates, stats.missing))"
                + (match ? "" : "   MISMATCH")
        )
    }
    let totalCounted = final.sensors.totalReadings
    say("total       \(String(format: "%6d  %7d", totalSent, totalCounted))")
    say()
    if allMatch && totalCounted == totalSent {
        say("TOTALS MATCH: \(totalSent) readings sent, \(totalCounted) counted: \(handedOff.readings) by the primary (handed off), \(totalCounted - handedOff.readings) by the standby; none lost, none counted twice")
        succeeded = true
    } else {
        say("TOTALS DO NOT MATCH: \(totalSent) sent, \(totalCounted) counted. Logs: \(run.path)")
    }
} catch {
    say("DEMO FAILED: \(error)")
    say("logs: \(run.path)")
}
for child in children { child.killIfRunning() }
await broker.stop()
if succeeded { try? FileManager.default.removeItem(at: run) }
exit(succeeded ? 0 : 1)
