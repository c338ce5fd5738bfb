import Foundation
import MosquittoClient
import MosquittoTestKit
import Synchronization
import Testing

/// Integration tests of the MQTT client against a real, private mosquitto started by each test.
@Suite("MQTTClient against a real mosquitto", .timeLimit(.minutes(2)))
struct MQTTClientIntegrationTests {
    @Test("QoS 0, 1 and 2 round trips", arguments: MQTTQoS.allCases)
    func roundTrip(qos: MQTTQoS) async throws {
        try await withMosquittoBroker { broker in
            try await withClients(broker, count: 2) { clients in
                let (publisher, subscriber) = (clients[0], clients[1])
                let messages = subscriber.messages()
                let granted = try await subscriber.subscribe("rt/#", options: MQTTSubscribeOptions(qos: qos))
                #expect(granted == qos)
                let properties = MQTTPublishProperties(
                    userProperties: [MQTTUserProperty("k", "v"), MQTTUserProperty("k", "w")],
                    contentType: "text/plain",
                    correlationData: [1, 2, 3],
                    responseTopic: "reply/here"
                )
                try await publisher.publish("rt/\(qos.rawValue)", payload: Data("hello".utf8), qos: qos, properties: properties)
                let message = try #require(await messages.first { _ in true })
                #expect(message.topic == "rt/\(qos.rawValue)")
                #expect(message.payload == Data("hello".utf8))
                #expect(message.qos == qos)
                #expect(message.retain == false)
                #expect(message.properties.userProperties == properties.userProperties)
                #expect(message.properties.contentType == "text/plain")
                #expect(message.properties.correlationData == [1, 2, 3])
                #expect(message.properties.responseTopic == "reply/here")
            }
        }
    }

    @Test(
        "a retained message reaches a later subscriber; a zero-length retained publish clears it and live subscribers see the clear with its user properties"
    )
    func retainedAndClear() async throws {
        try await withMosquittoBroker { broker in
            try await withClients(broker, count: 3) { clients in
                let (publisher, live, late) = (clients[0], clients[1], clients[2])
                try await publisher.publish("state/a", payload: Data("v1".utf8), qos: .atLeastOnce, retain: true)

                let liveMessages = live.messages()
                try await live.subscribe("state/a")
                let retained = try #require(await liveMessages.first { _ in true })
                #expect(retained.retain)
                #expect(retained.payload == Data("v1".utf8))

                var liveIterator = liveMessages.makeAsyncIterator()
                try await publisher.publish(
                    "state/a", payload: Data(), qos: .atLeastOnce, retain: true,
                    properties: MQTTPublishProperties(userProperties: [MQTTUserProperty("cleared-by", "test")])
                )
                let clear = try #require(await liveIterator.next())
                #expect(clear.payload.isEmpty)
                #expect(clear.retain == false)
                #expect(clear.properties.userProperty("cleared-by") == "test")

                // A subscriber arriving after the clear gets nothing retained: a marker proves the order.
                let lateMessages = late.messages()
                try await late.subscribe("state/#")
                try await publisher.publish("state/marker", payload: Data("m".utf8), qos: .atLeastOnce)
                let first = try #require(await lateMessages.first { _ in true })
                #expect(first.topic == "state/marker")
            }
        }
    }

    @Test("message expiry removes a retained message")
    func messageExpiry() async throws {
        try await withMosquittoBroker { broker in
            try await withClients(broker, count: 2) { clients in
                let (publisher, subscriber) = (clients[0], clients[1])
                try await publisher.publish(
                    "expiring/a", payload: Data("soon gone".utf8), qos: .atLeastOnce, retain: true,
                    properties: MQTTPublishProperties(messageExpiry: .seconds(1))
                )
                try await publisher.publish("expiring/b", payload: Data("stays".utf8), qos: .atLeastOnce, retain: true)
                try await Task.sleep(for: .milliseconds(2_200))
                let messages = subscriber.messages()
                try await subscriber.subscribe("expiring/#")
                try await publisher.publish("expiring/marker", payload: Data("m".utf8), qos: .atLeastOnce)
                var topics: [String] = []
                for await message in messages {
                    topics.append(message.topic)
                    if message.topic == "expiring/marker" { break }
                }
                #expect(topics == ["expiring/b", "expiring/marker"])
            }
        }
    }

    @Test("the Will is published when a client dies without DISCONNECT, and not after a clean shutdown")
    func will() async throws {
        try await withMosquittoBroker { broker in
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            try await withClients(broker, count: 1) { clients in
                let watcher = clients[0]
                let messages = watcher.messages()
                try await watcher.subscribe("wills/#")

                var configuration = MQTTConfiguration(host: "127.0.0.1", port: proxy.port)
                configuration.will = .init(
                    topic: "wills/dying", payload: Data("gone".utf8), qos: .atLeastOnce,
                    properties: MQTTPublishProperties(userProperties: [MQTTUserProperty("why", "crash")]))
                let dying = try MQTTClient(configuration: configuration)
                try await dying.connect()
                var polite = configuration
                polite.will?.topic = "wills/polite"
                let leaving = try MQTTClient(configuration: polite)
                try await leaving.connect()
                await leaving.shutdown()

                await proxy.cutAllConnections()  // the TCP connection dies without DISCONNECT
                let will = try #require(await messages.first { _ in true })
                #expect(will.topic == "wills/dying")
                #expect(will.payload == Data("gone".utf8))
                #expect(will.properties.userProperty("why") == "crash")
                await dying.shutdown()
            }
        }
    }

    @Test("TLS connects with the generated CA and fails clearly with a wrong CA")
    func tls() async throws {
        try await withMosquittoBroker { broker in
            var good = MQTTConfiguration(host: "127.0.0.1", port: broker.tlsPort)
            good.tls = .init(caFile: broker.certificates.caFile.path)
            try await MQTTClient.withConnection(good) { client in
                try await client.publish("tls/ok", payload: Data("x".utf8), qos: .atLeastOnce)
            }

            var wrong = good
            wrong.tls = .init(caFile: broker.certificates.wrongCAFile.path)
            let error = await #expect(throws: MQTTError.self) {
                try await MQTTClient.withConnection(wrong) { _ in }
            }
            #expect(error?.code == .tlsFailure)
            #expect(error?.description.localizedCaseInsensitiveContains("certificate") == true)
        }
    }

    @Test(
        "TLS traffic both ways at once: 2,000 QoS 1 publishes from many tasks while the client's thread reads its own echoes, every one acknowledged and received"
    )
    func tlsTraffic() async throws {
        try await withMosquittoBroker { broker in
            var configuration = MQTTConfiguration(host: "127.0.0.1", port: broker.tlsPort)
            configuration.tls = .init(caFile: broker.certificates.caFile.path)
            try await MQTTClient.withConnection(configuration) { client in
                let messages = client.messages()
                try await client.subscribe("tls/echo/#", options: MQTTSubscribeOptions(qos: .atLeastOnce))
                let count = 2_000
                let seen = Mutex(Set<Int>())
                let collector = Task {
                    for await message in messages where message.topic.hasPrefix("tls/echo/") {
                        _ = seen.withLock { $0.insert(Int(String(decoding: message.payload, as: UTF8.self)) ?? -1) }
                    }
                }
                defer { collector.cancel() }
                // Publishes from the pool's threads while the client's thread reads (TLS: only that thread writes).
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for worker in 0..<8 {
                        group.addTask {
                            for number in stride(from: worker, to: count, by: 8) {
                                try await client.publish(
                                    "tls/echo/\(worker)", payload: Data("\(number)".utf8), qos: .atLeastOnce)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(await eventually(upTo: .seconds(30)) { seen.withLock { $0.count } == count })
                #expect(seen.withLock { $0 } == Set(0..<count))
            }
        }
    }

    @Test("wrong credentials are refused with badCredentials; an ACL-forbidden publish is refused")
    func credentialsAndACL() async throws {
        try await withMosquittoBroker { broker in
            var wrong = MQTTConfiguration(host: "127.0.0.1", port: broker.authenticatedPort)
            wrong.username = "handoff"
            wrong.password = "not-the-password"
            let error = await #expect(throws: MQTTError.self) {
                try await MQTTClient.withConnection(wrong) { _ in }
            }
            #expect(error?.code == .badCredentials)
            #expect([0x86, 0x87].contains(error?.reasonCode))  // mosquitto 2.0 answers 0x87

            var restricted = wrong
            restricted.username = "restricted"
            restricted.password = "restricted-secret"
            try await MQTTClient.withConnection(restricted) { client in
                try await client.publish("allowed/x", payload: Data("ok".utf8), qos: .atLeastOnce)
                let denied = await #expect(throws: MQTTError.self) {
                    try await client.publish("forbidden/x", payload: Data("no".utf8), qos: .atLeastOnce)
                }
                #expect(denied?.code == .publishRefused)
                #expect(denied?.reasonCode == 0x87)
            }
        }
    }

    @Test("after a broker restart the client reconnects, reports it and restores its subscriptions")
    func reconnectAndResubscribe() async throws {
        try await withMosquittoBroker { broker in
            var configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            configuration.reconnect = .init(initialDelay: .seconds(1), maximumDelay: .seconds(1))
            try await MQTTClient.withConnection(configuration) { client in
                let events = client.events()
                let messages = client.messages()
                try await client.subscribe("after/restart")
                await broker.stop()
                try await broker.start()
                var sawDown = false
                for await event in events {
                    if case .disconnected = event { sawDown = true }
                    if case .resubscribed(let count) = event {
                        #expect(count == 1)
                        break
                    }
                }
                #expect(sawDown)
                try await MQTTClient.withConnection(MQTTConfiguration(host: broker.host, port: broker.plainPort)) { publisher in
                    // The resubscription may still be in flight: publish until it is received.
                    let receiver = Task { await messages.first { $0.topic == "after/restart" } }
                    for _ in 0..<50 where !Task.isCancelled {
                        try await publisher.publish("after/restart", payload: Data("back".utf8), qos: .atLeastOnce)
                        try await Task.sleep(for: .milliseconds(100))
                        if client.isConnected { break }
                    }
                    let message = await receiver.value
                    #expect(message?.payload == Data("back".utf8))
                }
            }
        }
    }

    @Test("10,000 QoS 1 publishes in flight at once are all acknowledged")
    func manyInFlight() async throws {
        try await withMosquittoBroker { broker in
            try await withClients(broker, count: 1) { clients in
                let client = clients[0]
                let payload = Data(repeating: 7, count: 256)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<10_000 {
                        group.addTask { try await client.publish("bulk/\(index % 100)", payload: payload, qos: .atLeastOnce) }
                    }
                    try await group.waitForAll()
                }
            }
        }
    }

    @Test(
        "QoS 1 messages arriving while a client shuts down reach its messages() stream: the two holders of a persistent session see every one"
    )
    func noMessageLostAtShutdown() async throws {
        // The store saved by time: with a save per change, thousands of queued messages would take minutes.
        let configDirectory = try MosquittoBroker.timeSavedConfigDirectory()
        defer { try? FileManager.default.removeItem(at: configDirectory) }
        try await withMosquittoBroker(configDirectory: configDirectory) { broker in
            let count = 20_000
            let session = MQTTConfiguration(
                host: broker.host, port: broker.plainPort, clientID: "session-\(UUID().uuidString.prefix(8))", cleanStart: false,
                sessionExpiry: .seconds(60)
            )
            let first = try MQTTClient(configuration: session)
            let firstMessages = first.messages()
            try await first.connect()
            _ = try await first.subscribe("flood/#", options: MQTTSubscribeOptions(qos: .atLeastOnce))
            let received = Mutex(0)
            let firstSeen = Task {
                var seen: [Int] = []
                for await message in firstMessages {
                    seen.append(Int(String(decoding: message.payload, as: UTF8.self)) ?? -1)
                    received.withLock { $0 += 1 }
                }
                return seen
            }
            try await withClients(broker, count: 1) { clients in
                let publisher = clients[0]
                let flood = Task {
                    for batch in stride(from: 0, to: count, by: 500) {
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            for number in batch..<min(batch + 500, count) {
                                group.addTask { try await publisher.publish("flood/n", payload: Data("\(number)".utf8), qos: .atLeastOnce) }
                            }
                            try await group.waitForAll()
                        }
                    }
                }
                // Shut the first holder down in the middle of the flood, while messages are arriving.
                // (Once a thousand have arrived: a loaded machine's debug build may take many seconds for a third.)
                #expect(await eventually(upTo: .seconds(60)) { received.withLock { $0 } >= 1_000 })
                await first.shutdown()
                try await flood.value
            }
            let before = await firstSeen.value
            // The second holder of the session gets what the broker queued after the first one left.
            let second = try MQTTClient(configuration: session)
            let secondMessages = second.messages()
            try await second.connect()
            let after = Mutex<Set<Int>>([])
            let collector = Task {
                for await message in secondMessages {
                    _ = after.withLock { $0.insert(Int(String(decoding: message.payload, as: UTF8.self)) ?? -1) }
                }
            }
            let all = Set(0..<count)
            let complete = await eventually(upTo: .seconds(20)) { after.withLock { $0 }.union(before) == all }
            await second.shutdown()
            await collector.value
            let missing = all.subtracting(after.withLock { $0 }.union(before)).sorted()
            #expect(
                complete,
                "lost at the shutdown of the first holder: \(missing.prefix(20)) (\(missing.count) in all; it saw \(before.count))")
            #expect(before.count < count, "the first holder was shut down after the flood, not during it")
        }
    }

    @Test(
        "a task that prefers the client's executor runs on the client's thread, where acknowledgements and messages resume it; after shutdown it runs elsewhere"
    )
    func executor() async throws {
        try await withMosquittoBroker { broker in
            try await withClients(broker, count: 2) { clients in
                let (publisher, subscriber) = (clients[0], clients[1])
                let messages = subscriber.messages()
                try await subscriber.subscribe("executor/#")
                let (ready, readiness) = AsyncStream.makeStream(of: Void.self)
                let task = Task(executorPreference: subscriber.executor) {
                    var threads = [subscriber.isOnClientThread]
                    // Its own publish: written from this thread, the PUBACK resumes it here.
                    try await subscriber.publish("executor/own", payload: Data("1".utf8), qos: .atLeastOnce)
                    threads.append(subscriber.isOnClientThread)
                    var iterator = messages.makeAsyncIterator()
                    let own = await iterator.next()
                    threads.append(subscriber.isOnClientThread)
                    readiness.yield()
                    // Another client's message, yielded to the stream by the message callback.
                    let other = await iterator.next()
                    threads.append(subscriber.isOnClientThread)
                    return (threads, own?.topic, other?.topic)
                }
                for await _ in ready { break }
                try await publisher.publish("executor/other", payload: Data("2".utf8), qos: .atLeastOnce)
                let (threads, own, other) = try await task.value
                #expect(own == "executor/own")
                #expect(other == "executor/other")
                #expect(threads == [true, true, true, true])
                #expect(!subscriber.isOnClientThread)
            }
            let client = try MQTTClient(configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort))
            try await client.connect()
            await client.shutdown()
            let onClientThread = await Task(executorPreference: client.executor) { client.isOnClientThread }.value
            #expect(!onClientThread)
        }
    }

    @Test("shutdown returns in bounded time while the broker is unreachable")
    func boundedShutdown() async throws {
        try await withMosquittoBroker { broker in
            var configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            configuration.shutdownTimeout = .seconds(2)
            let client = try MQTTClient(configuration: configuration)
            try await client.connect()
            await broker.kill()
            try await Task.sleep(for: .milliseconds(1_500))  // the network thread is now reconnecting
            let pending = Task { try await client.publish("never/acked", payload: Data("x".utf8), qos: .atLeastOnce) }
            let start = ContinuousClock.now
            await client.shutdown()
            #expect(ContinuousClock.now - start < .seconds(8), "the shutdown was not bounded by its 2 s time limit")
            let result = await pending.result
            #expect(throws: MQTTError.self) { try result.get() }
        }
    }

    @Test("connecting to a port where nothing listens fails with brokerUnreachable")
    func unreachable() async throws {
        let port = try freeLoopbackPort()
        let error = await #expect(throws: MQTTError.self) {
            try await MQTTClient.withConnection(MQTTConfiguration(host: "127.0.0.1", port: port)) { _ in }
        }
        #expect(error?.code == .brokerUnreachable)
    }

    @Test("broker URLs are parsed")
    func urls() throws {
        let plain = try MQTTConfiguration(url: "mqtt://user:p%40ss@broker.local:1999")
        #expect(plain.host == "broker.local" && plain.port == 1999 && plain.tls == nil)
        #expect(plain.username == "user" && plain.password == "p@ss")
        let secure = try MQTTConfiguration(url: "mqtts://broker.local")
        #expect(secure.port == 8883 && secure.tls != nil)
        #expect(throws: MQTTError.self) { try MQTTConfiguration(url: "http://broker.local") }
        #expect(throws: MQTTError.self) { try MQTTConfiguration(url: "mqtt://") }
    }
}

/// Connects `count` clients to the broker's anonymous listener, runs `body`, shuts them all down.
func withClients<T>(_ broker: MosquittoBroker, count: Int, _ body: ([MQTTClient]) async throws -> T) async throws -> T {
    var clients: [MQTTClient] = []
    do {
        for _ in 0..<count {
            let client = try MQTTClient(configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort))
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
