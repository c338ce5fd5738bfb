import EdgeGatewayKit
import Foundation

/// The graceful scenario: SIGTERM to the primary, which hands its state off; the standby merges it and continues.
/// True when every reading was counted exactly once.
func runHandoffScenario(_ run: DemoRun, _ settings: DemoSettings) async throws -> Bool {
    let primary = try await run.startGateway("primary", waitUntilActive: true)
    say("primary   edge-gateway pid \(primary.pid): consuming telemetry (persistent session edge-gateway-demo-telemetry)")
    let standby = try await run.startGateway("standby", waitUntilActive: false)
    say("standby   edge-gateway pid \(standby.pid): waiting for a handoff")
    let sensors = try run.startSensors(count: settings.sensors, rate: settings.rate)
    say("sensors   edge-sensors pid \(sensors.pid): \(settings.sensors) sensors x \(settings.rate) readings/s, numbered, QoS 1")
    try await Task.sleep(for: .seconds(settings.before))
    let countedBefore = run.status("primary")?.counted.values.reduce(0, +) ?? 0
    say("          ... \(settings.before) s of telemetry: the primary has counted about \(countedBefore) readings")
    say()

    // The handoff.
    let sigtermAt = now()
    primary.send(SIGTERM)
    say("SIGTERM   sent to the primary (pid \(primary.pid))")
    guard let primaryStatus = await primary.waitForExit() else {
        throw DemoFailure("the primary did not exit after SIGTERM:\n\(primary.logTail())")
    }
    guard primaryStatus == 0, let primaryReport = JSONFile.read(GatewayReport.self, from: run.file("primary-report.json")),
        let handedOff = primaryReport.handedOff, handedOff.outcome == "handed-off"
    else {
        throw DemoFailure("the primary exited with status \(primaryStatus) without handing off:\n\(primary.logTail())")
    }
    say("primary   exited 0 after handing off label '\(handedOff.label)'")
    say(
        "          handoff \(handedOff.handoffID ?? "?"): \(handedOff.bytes ?? 0) bytes of state, \(handedOff.readings) readings of \(primaryReport.sensors.count) sensors"
    )
    if let ms = handedOff.sigtermToAcknowledgedMs {
        say(
            "          in the primary, SIGTERM received -> telemetry detached, state handed off, broker acknowledged: \(String(format: "%.1f ms", ms))"
        )
    }
    guard await waitUntil(upTo: .seconds(15), { run.status("standby")?.active == true }),
        let takeover = run.status("standby")?.takeover
    else {
        throw DemoFailure("the standby did not take over:\n\(standby.logTail())")
    }
    say("standby   merged handoff \(takeover.handoffID) (\(takeover.readings) readings) and attached to the telemetry session")
    say("          SIGTERM to the primary -> standby merged its state: \(milliseconds(takeover.mergedAt - sigtermAt))")
    try await Task.sleep(for: .seconds(settings.after))

    // Stop the sensors, let the standby count everything the broker queued, then stop it too.
    let sent = try await run.stopSensors(sensors)
    let final = try await run.drainAndStop(standby, sent: sent)
    say()
    let allMatch = run.printTable(sent: sent, final: final.sensors) { sent, stats in stats.count == sent && stats.missing == 0 }
    let totalSent = sent.values.reduce(0, +)
    let totalCounted = final.sensors.totalReadings
    say()
    if allMatch && totalCounted == totalSent {
        say(
            "TOTALS MATCH: \(totalSent) readings sent, \(totalCounted) counted: \(handedOff.readings) by the primary (handed off), \(totalCounted - handedOff.readings) by the standby; none lost, none counted twice"
        )
        return true
    }
    say("TOTALS DO NOT MATCH: \(totalSent) sent, \(totalCounted) counted. Logs: \(run.folder.path)")
    return false
}
