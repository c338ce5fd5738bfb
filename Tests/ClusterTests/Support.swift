import ClusterTestKit
import Foundation
import MosquittoClient
import Synchronization

/// A client configuration for `node`, with the credentials mod_mqtt requires.
func configuration(_ node: EjabberdCluster.Node, clientID: String? = nil) -> MQTTConfiguration {
    var configuration = MQTTConfiguration(
        host: node.host, port: node.mqttPort, username: EjabberdCluster.username, password: EjabberdCluster.password,
        clientID: clientID
    )
    configuration.shutdownTimeout = .seconds(2)
    return configuration
}

/// Connects one client per entry of `nodes`, runs `body`, and always shuts them down.
func withClients<T>(
    _ nodes: [EjabberdCluster.Node], _ body: ([MQTTClient]) async throws -> T
) async throws -> T {
    var clients: [MQTTClient] = []
    do {
        for (index, node) in nodes.enumerated() {
            let client = try MQTTClient(configuration: configuration(node, clientID: "smoke-\(index)-\(UUID().uuidString.prefix(8))"))
            clients.append(client)
            try await client.connect()
        }
        let result = try await body(clients)
        for client in clients { await client.shutdown() }
        return result
    } catch {
        for client in clients { await client.shutdown() }
        throw error
    }
}

/// Everything a client receives, in order, from its creation on (create it before subscribing).
final class Inbox: Sendable {
    private let log = MessageLog()
    private let reader: Task<Void, Never>

    init(_ client: MQTTClient) {
        let (stream, log) = (client.messages(), log)
        reader = Task { for await message in stream { log.received.withLock { $0.append(message) } } }
    }

    deinit { reader.cancel() }

    var messages: [MQTTMessage] { log.received.withLock { $0 } }

    /// Waits until `condition` holds for what arrived (or `timeout` passed), and returns what arrived.
    @discardableResult
    func wait(timeout: Duration = .seconds(10), until condition: ([MQTTMessage]) -> Bool) async -> [MQTTMessage] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let now = messages
            if condition(now) || ContinuousClock.now >= deadline { return now }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits for a message on `topic` (nil after `timeout`).
    func first(on topic: String, timeout: Duration = .seconds(10)) async -> MQTTMessage? {
        await wait(timeout: timeout) { $0.contains { $0.topic == topic } }.first { $0.topic == topic }
    }
}

private final class MessageLog: Sendable {
    let received = Mutex<[MQTTMessage]>([])
}
