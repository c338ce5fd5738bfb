// handoff-demo: the edge gateway example end to end, with real processes, real signals and a real broker.
//
// It starts a private mosquitto (broker/mosquitto.conf, on free loopback ports), an edge-gateway primary and
// standby and the simulated sensors as child processes. After a few seconds of telemetry it stops the primary:
//
// - by default with SIGTERM: the primary hands its state off, the standby merges it and takes over (exit status 0
//   only when every reading was counted exactly once);
// - with --crash, with SIGKILL: both gateways checkpoint their state every --checkpoint-ms; the broker publishes
//   the dead primary's MQTT Will after --will-delay seconds, and the standby merges its last checkpoint and takes
//   over (exit status 0 only when no reading was counted twice and at most one checkpoint interval of readings was
//   lost).
//
// Then it lets readings flow a little longer, stops the sensors and compares, per sensor, the readings sent with
// the readings the gateways counted.
//
//   handoff-demo [--crash] [--sensors 5] [--rate 20] [--before 3] [--after 2]   (rate per sensor per second, seconds)
//                [--checkpoint-ms 500] [--will-delay 1]                          (crash mode)
import EdgeGatewayKit
import Foundation
import MosquittoTestKit

let settings = try DemoSettings(Options(Array(CommandLine.arguments.dropFirst())))
if settings.crash {
    say("swift-handoff demo: an IoT edge gateway is killed (SIGKILL); its standby recovers its last checkpoint")
} else {
    say("swift-handoff demo: an IoT edge gateway hands its state to its standby on SIGTERM")
}
say()
let broker = try await MosquittoBroker.start()
let run = try DemoRun(brokerURL: broker.plainURL)
var succeeded = false
do {
    say("broker    private mosquitto from broker/mosquitto.conf at \(broker.plainURL)")
    succeeded = settings.crash ? try await runCrashScenario(run, settings) : try await runHandoffScenario(run, settings)
} catch {
    say("DEMO FAILED: \(error)")
    say("logs: \(run.folder.path)")
}
run.killChildren()
await broker.stop()
if succeeded { try? FileManager.default.removeItem(at: run.folder) }
exit(succeeded ? 0 : 1)
