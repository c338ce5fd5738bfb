import EdgeGatewayKit
import Foundation

/// The crash scenario: both gateways checkpoint their state every `checkpointMs`; the primary is killed with
/// SIGKILL (no handoff) at a random point between two checkpoints; `willDelay` seconds after its connection died
/// the broker publishes its MQTT Will, and the standby merges the primary's last checkpoint and continues. The
/// readings the primary counted after that checkpoint are lost. True when no reading was counted twice and no more
/// were lost than one checkpoint interval of sensor traffic can carry.
func runCrashScenario(_ run: DemoRun, _ settings: DemoSettings) async throws -> Bool {
    let checkpoints = ["--checkpoint-ms", "\(settings.checkpointMs)", "--will-delay", "\(settings.willDelay)"]
    let primary = try await run.startGateway("primary", extraArguments: checkpoints, waitUntilActive: true)
    say("primary   edge-gateway pid \(primary.pid): consuming telemetry (persistent session edge-gateway-demo-telemetry)")
    say("          checkpointing its state every \(settings.checkpointMs) ms, MQTT Will delay \(settings.willDelay) s")
    let standby = try await run.startGateway("standby", extraArguments: checkpoints, waitUntilActive: false)
    say("standby   edge-gateway pid \(standby.pid): waiting for a handoff, or for a dead primary's last checkpoint")
    let sensors = try run.startSensors(count: settings.sensors, rate: settings.rate)
    say("sensors   edge-sensors pid \(sensors.pid): \(settings.sensors) sensors x \(settings.rate) readings/s, numbered, QoS 1")
    // Plus a random part of one checkpoint interval: the kill may land anywhere between two checkpoints.
    let jitter = Int.random(in: 0..<settings.checkpointMs)
    try await Task.sleep(for: .seconds(settings.before) + .milliseconds(jitter))
    let countedBefore = run.status("primary")?.counted.values.reduce(0, +) ?? 0
    say(
        "          ... \(String(format: "%.3f", Double(settings.before) + Double(jitter) / 1_000)) s of telemetry: the primary has counted about \(countedBefore) readings"
    )
    say()

    // The crash.
    let sigkillAt = now()
    primary.send(SIGKILL)
    say("SIGKILL   sent to the primary (pid \(primary.pid)): no handoff, only its checkpoints on the broker survive")
    guard await primary.waitForExit() != nil, primary.killedBySignal else {
        throw DemoFailure("the primary did not die of the SIGKILL:\n\(primary.logTail())")
    }
    // Its status file is rewritten every 100 ms: what it had counted shortly before it died.
    let lastStatus = run.status("primary")?.counted.values.reduce(0, +) ?? 0
    say("primary   killed; its last status file (at most 100 ms old) showed \(lastStatus) readings counted")
    guard await waitUntil(upTo: .seconds(Double(settings.willDelay) + 15), { run.status("standby")?.active == true }),
        let takeover = run.status("standby")?.takeover
    else {
        throw DemoFailure("the standby did not take over:\n\(standby.logTail())")
    }
    guard takeover.fromCheckpoint else {
        throw DemoFailure("the standby merged \(takeover.handoffID), a handoff rather than the primary's checkpoint:\n\(standby.logTail())")
    }
    say("standby   merged checkpoint \(takeover.handoffID) (\(takeover.readings) readings) and attached to the telemetry session")
    say("          the primary had taken that checkpoint \(milliseconds(sigkillAt - takeover.createdAt)) before the SIGKILL")
    say(
        "          SIGKILL to the primary -> standby merged its last checkpoint: \(milliseconds(takeover.mergedAt - sigkillAt)) (Will delay \(settings.willDelay) s)"
    )
    try await Task.sleep(for: .seconds(settings.after))

    // Stop the sensors, let the standby count everything the broker queued, then stop it too.
    let sent = try await run.stopSensors(sensors)
    let final = try await run.drainAndStop(standby, sent: sent)
    say()
    // Each reading sent was either counted once or lost with the primary: a gap in the sensor's sequence numbers.
    let accounted = run.printTable(sent: sent, final: final.sensors) { sent, stats in stats.count + stats.missing == sent }
    let totalSent = sent.values.reduce(0, +)
    let totalCounted = final.sensors.totalReadings
    let lost = final.sensors.values.reduce(0) { $0 + $1.missing }
    let twice = sent.reduce(0) { total, sensor in
        let stats = final.sensors[sensor.key] ?? SensorStats()
        return total + max(0, stats.count + stats.missing - sensor.value)
    }
    // Readings the primary counted after its last checkpoint, seen in its last status file: lost for sure.
    let lostForSure = max(0, lastStatus - takeover.readings)
    // A sensor sends at most rate x interval readings in one interval, plus one when the interval starts on a reading.
    let oneInterval = settings.sensors * (settings.rate * settings.checkpointMs / 1_000 + 1)
    say()
    say("recovered  \(takeover.readings) readings, from the primary's last checkpoint")
    say(
        "lost       \(lost) readings (gaps in the sequence numbers): received by the primary after that checkpoint (its last status showed \(lostForSure) of them); one \(settings.checkpointMs) ms interval of \(settings.sensors) sensors x \(settings.rate)/s carries at most \(oneInterval)"
    )
    say("twice      \(twice) readings counted twice: per sensor, counted + lost = sent")
    say()
    let holds = accounted && twice == 0 && totalSent == totalCounted + lost && lost >= lostForSure && lost <= oneInterval
    if holds {
        say(
            "CRASH RECOVERED: \(totalSent) readings sent, \(totalCounted) counted: \(takeover.readings) recovered from the primary's last checkpoint, \(totalCounted - takeover.readings) by the standby; \(lost) lost in the crash (at most \(oneInterval)), none counted twice"
        )
        return true
    }
    say(
        "CRASH FIGURES DO NOT HOLD: \(totalSent) sent, \(totalCounted) counted, \(lost) lost (at most \(oneInterval) expected). Logs: \(run.folder.path)"
    )
    return false
}
