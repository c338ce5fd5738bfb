import ClusterTestKit
import Foundation
import Testing

@Suite("EjabberdCluster", .timeLimit(.minutes(3)))
struct EjabberdClusterKitTests {
    @Test("starts two clustered nodes and removes everything on stop")
    func startAndStop() async throws {
        let cluster = try await EjabberdCluster.start()
        print(
            "ejabberd \(cluster.ejabberdVersion) cluster of \(cluster.nodes.count) nodes started in \(cluster.startupDuration): \(cluster.nodes)"
        )
        #expect(cluster.nodes.count == 2)
        #expect(Set(cluster.nodes.map(\.mqttPort)).count == 2)
        let members = try await cluster.members(asSeenBy: cluster.nodes[1])
        #expect(Set(members) == Set(cluster.nodes.map(\.name)))
        let clock = ContinuousClock()
        let stopping = clock.now
        await cluster.stop()
        print("stopped in \(clock.now - stopping)")
        #expect(!FileManager.default.fileExists(atPath: cluster.directory.path))
        #expect(!cluster.isRunning(cluster.nodes[0]) && !cluster.isRunning(cluster.nodes[1]))
    }
}
