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

let settings = try DemoSettings(Options(Array(CommandLine.arguments.dropFirst())))
say("swift-handoff demo: an IoT edge gateway hands its state to its standby on SIGTERM")
say()
let broker = try await MosquittoBroker.start()
let run = try DemoRun(brokerURL: broker.plainURL)
var succeeded = false
do {
    say("broker    private mosquitto from broker/mosquitto.conf at \(broker.plainURL)")
    succeeded = try await runHandoffScenario(run, settings)
} catch {
    say("DEMO FAILED: \(error)")
    say("logs: \(run.folder.path)")
}
run.killChildren()
await broker.stop()
if succeeded { try? FileManager.default.removeItem(at: run.folder) }
exit(succeeded ? 0 : 1)
