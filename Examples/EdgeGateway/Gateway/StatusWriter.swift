import EdgeGatewayKit
import Logging
import ServiceLifecycle

/// Rewrites the gateway's status file every 100 ms (and once more when it stops), for the demo and for operators.
struct StatusWriter: Service {
    let path: String
    let role: String
    let aggregator: Aggregator
    let active: Shared<Bool>
    let logger: Logger

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while true {
                await write()
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        await write()
    }

    private func write() async {
        let status = GatewayStatus(
            role: role,
            active: active.value,
            counted: await aggregator.counted,
            lastSeq: await aggregator.lastSeq,
            takeover: await aggregator.takeover
        )
        do {
            try JSONFile.write(status, to: path)
        } catch {
            logger.warning("could not write the status file", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }
}
