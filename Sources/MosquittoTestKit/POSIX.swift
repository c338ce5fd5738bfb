import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The few system calls the kit makes itself: loopback ports, signals and signal masks, a close-on-exec socket pair.
package enum POSIX {
    /// The loopback address every private broker binds.
    package static let loopbackAddress = "127.0.0.1"

    /// Whether this process runs as root.
    package static var isRoot: Bool { geteuid() == 0 }

    /// Sends `signal` to process `pid`.
    package static func send(_ signal: Int32, to pid: Int32) {
        _ = kill(pid_t(pid), signal)
    }

    /// A TCP socket, or nil when the system refuses one.
    private static func makeTCPSocket() -> Int32? {
        #if canImport(Darwin)
        let descriptor = socket(AF_INET, SOCK_STREAM, 0)
        #else
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #endif
        return descriptor >= 0 ? descriptor : nil
    }

    /// 127.0.0.1:`port` as a socket address.
    private static func loopbackSocketAddress(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        #if canImport(Darwin)
        address.sin_len = UInt8(MemoryLayout<sockaddr_in>.size)
        #endif
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        return address
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago: bound to port 0, read back, released. Someone else may take
    /// it before the broker binds it; callers retry with new ports when that happens.
    package static func freeLoopbackPort() throws -> Int {
        guard let descriptor = makeTCPSocket() else {
            throw MosquittoTestKitError(.brokerDidNotStart, "Could not create a socket to find a free port (errno \(errno)).")
        }
        defer { close(descriptor) }
        var address = loopbackSocketAddress(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            throw MosquittoTestKitError(.brokerDidNotStart, "Could not bind 127.0.0.1:0 to find a free port (errno \(errno)).")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else {
            throw MosquittoTestKitError(.brokerDidNotStart, "getsockname failed while finding a free port (errno \(errno)).")
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Distinct free loopback ports.
    package static func freeLoopbackPorts(count: Int) throws -> [Int] {
        var ports: [Int] = []
        var attempts = 0
        while ports.count < count {
            attempts += 1
            let port = try freeLoopbackPort()
            if !ports.contains(port) { ports.append(port) }
            if attempts > count * 20 {
                throw MosquittoTestKitError(.brokerDidNotStart, "Could not find \(count) distinct free loopback ports.")
            }
        }
        return ports
    }

    /// Runs `process` from a new thread whose signal mask is empty, and returns once it is running.
    ///
    /// A child starts with the signal mask of the thread that spawned it, and Foundation's `Process` does not reset it.
    /// Swift concurrency's threads block nearly every signal, so mosquitto spawned from one never receives SIGTERM
    /// (it only restores the mask it was given around its wait) and could not stop gracefully.
    package static func runWithEmptySignalMask(_ process: Process) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let spawner = Thread {
                var noSignals = sigset_t()
                sigemptyset(&noSignals)
                pthread_sigmask(SIG_SETMASK, &noSignals, nil)
                do {
                    try process.run()
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            spawner.name = "mosquitto-test-kit-spawner"
            spawner.start()
        }
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port` (the connection is closed at once).
    package static func acceptsConnections(port: Int) -> Bool {
        guard let descriptor = makeTCPSocket() else { return false }
        defer { close(descriptor) }
        var address = loopbackSocketAddress(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return connected == 0
    }

    /// A connected pair of Unix sockets whose two ends are closed on `exec`, so that no child process inherits them by
    /// accident (used like a pipe: when one end is closed, reads at the other end return end-of-file).
    static func makeCloseOnExecSocketPair() throws -> (FileHandle, FileHandle) {
        var descriptors: [Int32] = [-1, -1]
        #if canImport(Darwin)
        // No SOCK_CLOEXEC on Darwin; Foundation's Process there closes inherited descriptors in children anyway.
        guard socketpair(AF_UNIX, SOCK_STREAM, 0, &descriptors) == 0 else {
            throw MosquittoTestKitError(.brokerDidNotStart, "socketpair() failed (errno \(errno)).")
        }
        for descriptor in descriptors { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        #else
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &descriptors) == 0 else {
            throw MosquittoTestKitError(.brokerDidNotStart, "socketpair() failed (errno \(errno)).")
        }
        #endif
        return (
            FileHandle(fileDescriptor: descriptors[0], closeOnDealloc: true),
            FileHandle(fileDescriptor: descriptors[1], closeOnDealloc: true)
        )
    }
}
