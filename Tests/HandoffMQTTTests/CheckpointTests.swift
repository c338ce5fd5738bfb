import Foundation
import Handoff
import HandoffTestSupport
import MosquittoClient
import MosquittoTestKit
import Testing

@testable import HandoffMQTT

/// Checkpoints released by the broker's Will (docs/PROTOCOL.md §9), against a real mosquitto. A "crash" here is a
/// predecessor whose connection dies without a DISCONNECT (a proxy cuts it and refuses it back), so the broker
/// publishes its Will; tests with real SIGKILLed processes are in HandoffServiceTests.
@Suite("Checkpoints released by the Will", .serialized, .timeLimit(.minutes(3)))
struct CheckpointTests {
    static func options(_ name: String, willDelay: Duration = .seconds(1), keyed: Bool = false) -> MQTTHandoffTransport.Options {
        var options = MQTTHandoffTransport.Options(prefix: "\(name)-\(UUID().uuidString.prefix(8))", willDelay: willDelay)
        // Keyed: checkpoints signed and encrypted, claims signed, and a claim of one's own checkpoint verified before it fences.
        if keyed {
            options.keys = try! HandoffKeySet(writingKey: HandoffKey(id: "k1", secret: Data(repeating: 0x5A, count: 32)), encrypts: true)
        }
        return options
    }

    @Test(
        "a live successor merges the last checkpoint of a predecessor whose connection died; it is claimed once", arguments: [false, true])
    func liveSuccessorMergesCheckpoint(keyed: Bool) async throws {
        try await withMosquittoBroker { broker in
            let options = Self.options("crash", keyed: keyed)
            let label = try HandoffLabel("meter")
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            let predecessor = try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: proxy.port), options: options)
            let owner = HandoffChannel<Int>(label: label, transport: predecessor)
            #expect(try await owner.checkpoint(41) == .written)
            #expect(try await owner.checkpoint(41) == .unchanged)
            #expect(try await owner.checkpoint(42) == .written)

            let direct = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            let successor = try await MQTTHandoffTransport.connect(configuration: direct, options: options)
            let channel = HandoffChannel<Int>(label: label, transport: successor)
            let notices = try await channel.subscribe()
            // While the predecessor lives, its checkpoint is not offered.
            #expect(try await channel.complete().handoffs.isEmpty)

            let clock = ContinuousClock()
            let crashed = clock.now
            await proxy.refuseNewConnections()
            await proxy.cutAllConnections()
            var iterator = notices.makeAsyncIterator()
            _ = await iterator.next()
            let batch = try await channel.complete()
            let released = crashed.duration(to: clock.now)
            #expect(batch.handoffs.map(\.state) == [42])
            #expect(batch.handoffs.first?.isCheckpoint == true)
            #expect(batch.handoffs.first?.origin.instance == predecessor.origin.instance)
            // The Will (1 s, sent by mosquitto's once-a-second housekeeping), not the 30 s liveness lease, released it; the bound is
            // generous for a loaded machine.
            #expect(released < .seconds(8), "released after \(released) with a Will delay of 1 s")

            // The predecessor was only partitioned: back on the network, it learns it was fenced.
            let fencing = predecessor.fencing()
            await proxy.acceptNewConnections()
            var fenced = fencing.makeAsyncIterator()
            let report = await fenced.next()
            #expect(report?.label == label)
            #expect(predecessor.isFenced(label))
            #expect(try await owner.checkpoint(43) == .fenced)

            // A later successor finds nothing: the checkpoint was claimed once.
            let late = try await MQTTHandoffTransport.connect(configuration: direct, options: options)
            let lateChannel = HandoffChannel<Int>(label: label, transport: late)
            _ = try await lateChannel.subscribe()
            #expect(try await lateChannel.complete().handoffs.isEmpty)

            await late.shutdown()
            await successor.shutdown()
            await predecessor.shutdown()
        }
    }

    @Test("a successor started after the crash still finds and merges the released checkpoint")
    func laterSuccessorMergesCheckpoint() async throws {
        try await withMosquittoBroker { broker in
            let options = Self.options("late")
            let label = try HandoffLabel("buffer")
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            let predecessor = try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: proxy.port), options: options)
            try await HandoffChannel<[String]>(label: label, transport: predecessor).checkpoint(["a", "b"])
            await proxy.refuseNewConnections()
            await proxy.cutAllConnections()
            try await Task.sleep(for: .seconds(2))  // the Will (delay 1 s) has been published

            let successor = try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort), options: options)
            let channel = HandoffChannel<[String]>(label: label, transport: successor)
            _ = try await channel.subscribe()
            let batch = try await channel.complete()
            #expect(batch.handoffs.map(\.state) == [["a", "b"]])
            await successor.shutdown()
            await predecessor.shutdown()
        }
    }

    @Test("a reconnect within the Will delay releases nothing")
    func quickReconnectSuppressesTheWill() async throws {
        try await withMosquittoBroker { broker in
            let options = Self.options("blip", willDelay: .seconds(3))
            let label = try HandoffLabel("blip")
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            let predecessor = try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: proxy.port), options: options)
            try await HandoffChannel<Int>(label: label, transport: predecessor).checkpoint(7)
            let successor = try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort), options: options)
            let channel = HandoffChannel<Int>(label: label, transport: successor)
            _ = try await channel.subscribe()
            await proxy.cutAllConnections()  // reconnects within about a second
            try await Task.sleep(for: .seconds(5))
            try await successor.sync(timeout: .seconds(10))
            #expect(try await channel.complete().handoffs.isEmpty)
            #expect(!predecessor.isFenced(label))
            #expect(try await HandoffChannel<Int>(label: label, transport: predecessor).checkpoint(8) == .written)
            await successor.shutdown()
            await predecessor.shutdown()
        }
    }

    @Test("a predecessor partitioned longer than keep-alive and Will delay (a blackhole): its checkpoint is merged, it is fenced and told")
    func blackholePartitionFences() async throws {
        try await withMosquittoBroker { broker in
            let options = Self.options("blackhole")
            let label = try HandoffLabel("blackhole")
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            var configuration = MQTTConfiguration(host: broker.host, port: proxy.port)
            configuration.keepAlive = .seconds(5)  // libmosquitto's smallest
            let predecessor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let fencing = predecessor.fencing()
            try await HandoffChannel<Int>(label: label, transport: predecessor).checkpoint(99)
            let successor = try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort), options: options)
            let channel = HandoffChannel<Int>(label: label, transport: successor)
            let notices = try await channel.subscribe()

            // Nothing gets through, nothing is closed: the broker notices only by its keep-alive (1.5 × 5 s).
            await proxy.pause()
            var iterator = notices.makeAsyncIterator()
            _ = await iterator.next()
            #expect(try await channel.complete().handoffs.map(\.state) == [99])
            await proxy.resume()

            var reports = fencing.makeAsyncIterator()
            let report = await reports.next()
            #expect(report?.label == label, "the partitioned predecessor was not told it lost the label")
            #expect(try await HandoffChannel<Int>(label: label, transport: predecessor).checkpoint(100) == .fenced)
            await successor.shutdown()
            await predecessor.shutdown()
        }
    }

    @Test("8 successors race for the checkpoints of 200 crashed predecessors: each merged exactly once, none lost")
    func eightSuccessorsTwoHundredCrashes() async throws {
        // 200 sessions of crashed predecessors queue every status published after them: a broker that saves its
        // store after every change gets slower with each one (see MosquittoBroker.timeSavedConfigDirectory()).
        let configDirectory = try MosquittoBroker.timeSavedConfigDirectory()
        defer { try? FileManager.default.removeItem(at: configDirectory) }
        try await withMosquittoBroker(configDirectory: configDirectory) { broker in
            let options = Self.options("crashes")
            let label = try HandoffLabel("crash-race")
            let direct = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            var successors: [MQTTHandoffTransport] = []
            for _ in 0..<8 { successors.append(try await MQTTHandoffTransport.connect(configuration: direct, options: options)) }
            let merges = Locked<[Int: [String]]>([:])  // value -> instances that merged it
            let workers = successors.map { transport in
                Task {
                    let channel = HandoffChannel<Int>(label: label, transport: transport, timeout: .seconds(20))
                    let notices = try await channel.subscribe()
                    for await notice in notices {
                        guard case .available = notice else { continue }
                        let batch = try await channel.complete()
                        merges.withLock { merges in
                            for handoff in batch.handoffs { merges[handoff.state, default: []].append(transport.origin.instance) }
                        }
                    }
                }
            }
            defer { for worker in workers { worker.cancel() } }

            // Four waves of 50 predecessors, each wave behind its own proxy, crashed at once.
            var predecessors: [MQTTHandoffTransport] = []
            for wave in 0..<4 {
                let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
                defer { proxy.stop() }
                for index in 0..<50 {
                    let predecessor = try await MQTTHandoffTransport.connect(
                        configuration: MQTTConfiguration(host: broker.host, port: proxy.port), options: options)
                    try await HandoffChannel<Int>(label: label, transport: predecessor).checkpoint(wave * 50 + index)
                    predecessors.append(predecessor)
                }
                await proxy.refuseNewConnections()
                await proxy.cutAllConnections()
                _ = await eventually(upTo: .seconds(30)) { merges.withLock { $0.count } >= (wave + 1) * 50 }
            }
            let settled = await eventually(upTo: .seconds(30)) { merges.withLock { $0.count } == 200 }
            try await Task.sleep(for: .milliseconds(500))  // a duplicate merge would show up here
            let merged = merges.withLock { $0 }
            #expect(settled, "\(merged.count) of 200 checkpoints merged")
            #expect(Set(merged.keys) == Set(0..<200))
            let twice = merged.filter { $0.value.count > 1 }
            #expect(twice.isEmpty, "merged more than once: \(twice.prefix(5))")
            let winners = Set(merged.values.compactMap(\.first))
            print("200 crashes: merged by \(winners.count) of 8 successors")
            for worker in workers { worker.cancel() }
            for transport in successors { await transport.shutdown() }
            await withTaskGroup(of: Void.self) { group in
                for predecessor in predecessors { group.addTask { await predecessor.shutdown() } }
            }
        }
    }

    @Test(
        "a broker crash during the Will delay loses the Will (mosquitto 2.0 keeps it in memory): the liveness lease releases the checkpoint, or nothing does",
        arguments: [true, false]
    )
    func brokerCrashDuringTheWillDelay(withLease: Bool) async throws {
        try await withMosquittoBroker { broker in
            var options = Self.options("broker-crash", willDelay: .seconds(3))
            options.livenessLease = withLease ? .seconds(4) : nil
            let label = try HandoffLabel("broker-crash")
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            let predecessor = try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: proxy.port), options: options)
            try await HandoffChannel<Int>(label: label, transport: predecessor).checkpoint(5)
            let successor = try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort), options: options)
            let channel = HandoffChannel<Int>(label: label, transport: successor)
            _ = try await channel.subscribe()

            // The predecessor dies; before its Will is due, the broker is killed too, and restarted from its store.
            await proxy.refuseNewConnections()
            await proxy.cutAllConnections()
            try await Task.sleep(for: .milliseconds(500))
            await broker.kill()
            try await broker.restart()

            var merged: [Int] = []
            _ = await eventually(upTo: .seconds(withLease ? 20 : 10)) {
                merged += (try? await channel.complete().handoffs.map(\.state)) ?? []
                return !merged.isEmpty
            }
            if withLease {
                #expect(merged == [5], "the lease did not release the checkpoint of the predecessor whose Will was lost")
            } else {
                // What docs/PROTOCOL.md §9 says of mosquitto 2.0: the delayed Will died with the broker.
                #expect(merged.isEmpty, "the Will survived the broker crash (mosquitto 2.1 persists Wills): update docs/PROTOCOL.md §9")
            }
            await successor.shutdown()
            await predecessor.shutdown()
        }
    }

    @Test("a graceful shutdown hands off and removes its checkpoints: the successor merges the handoff only", arguments: [false, true])
    func gracefulShutdownMergesOnce(keyed: Bool) async throws {
        try await withMosquittoBroker { broker in
            let options = Self.options("graceful", keyed: keyed)
            let label = try HandoffLabel("graceful")
            let configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            let predecessor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let owner = HandoffChannel<Int>(label: label, transport: predecessor)
            try await owner.checkpoint(10)
            try await owner.checkpoint(11)
            let successor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let channel = HandoffChannel<Int>(label: label, transport: successor)
            _ = try await channel.subscribe()
            try await owner.initiate(12)
            try await predecessor.removeCheckpoint(label, timeout: .seconds(5))
            await predecessor.shutdown()
            try await Task.sleep(for: .seconds(2))
            try await successor.sync(timeout: .seconds(10))
            var merged: [ClaimedHandoff<Int>] = []
            merged += try await channel.complete().handoffs
            #expect(merged.map(\.state) == [12])
            #expect(merged.first?.isCheckpoint == false)
            await successor.shutdown()
        }
    }
}
