import Foundation

@testable import MosquittoTestKit

/// The mosquitto command line clients, run against a test broker.
enum MosquittoClients {
    /// Runs `mosquitto_pub -h 127.0.0.1 <arguments>`.
    static func publish(_ broker: MosquittoBroker, _ arguments: [String]) async throws -> CommandResult {
        let executable = try ExternalProgram.mosquittoPublish.locate()
        return try await runCommand(executable, ["-h", broker.host] + arguments)
    }

    /// Runs `mosquitto_sub -h 127.0.0.1 -C 1 -W 5 <arguments>`: waits at most 5 s for one message.
    static func receiveOne(_ broker: MosquittoBroker, _ arguments: [String]) async throws -> CommandResult {
        let executable = try ExternalProgram.mosquittoSubscribe.locate()
        return try await runCommand(executable, ["-h", broker.host, "-C", "1", "-W", "5"] + arguments)
    }
}
