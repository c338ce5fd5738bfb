import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
private let systemSocket = Glibc.socket
private let systemSend = Glibc.send
private let noSignal = Int32(MSG_NOSIGNAL)
#elseif canImport(Darwin)
import Darwin
private let systemSocket = Darwin.socket
private let systemSend = Darwin.send
private let noSignal: Int32 = 0
#endif

/// A reply of a Redis server (RESP2).
package indirect enum RedisReply: Sendable, Equatable {
    case simple(String)
    case error(String)
    case integer(Int)
    /// A bulk string; `nil` for RESP's null bulk string.
    case bulk(Data?)
    /// An array; `nil` for RESP's null array.
    case array([RedisReply]?)
}

/// Why a Redis command failed.
public struct RedisError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The command was not sent: the server could not be reached (nothing happened on the server).
        case unreachable
        /// The command was sent but no complete reply came: the server may or may not have run it.
        case outcomeUnknown
        /// The server answered with an error, or with something this client does not expect.
        case server
    }

    public var kind: Kind
    public var detail: String

    public var description: String { "Redis \(kind): \(detail)" }
}

/// One connection to a Redis server: one command at a time, blocking socket I/O on a private thread (never on the
/// caller's), a time limit per command, and a new connection after any failure.
package final class RedisConnection: Sendable {
    let host: String
    let port: Int
    let timeout: Duration
    private let queue = DispatchQueue(label: "handoff.redis")
    /// The socket, touched only on `queue`; -1: not connected.
    private let socket = Mutex<Int32>(-1)

    package init(host: String, port: Int, timeout: Duration) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    deinit {
        let descriptor = socket.withLock { $0 }
        if descriptor >= 0 { close(descriptor) }
    }

    /// Sends one command (its arguments as bytes) and returns the reply.
    package func send(_ arguments: [Data]) async throws(RedisError) -> RedisReply {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<RedisReply, RedisError>, Never>) in
            queue.async { continuation.resume(returning: self.perform(arguments)) }
        }
        return try result.get()
    }

    package func send(_ arguments: String...) async throws(RedisError) -> RedisReply {
        try await send(arguments.map { Data($0.utf8) })
    }

    // MARK: - On the queue

    private func perform(_ arguments: [Data]) -> Result<RedisReply, RedisError> {
        let descriptor: Int32
        switch connected() {
        case .success(let open): descriptor = open
        case .failure(let error): return .failure(error)
        }
        var request = Data("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            request.append(contentsOf: "$\(argument.count)\r\n".utf8)
            request.append(argument)
            request.append(contentsOf: [13, 10])
        }
        guard writeAll(descriptor, request) else {
            disconnect()
            // Some bytes may have reached the server: it may have run the command.
            return .failure(
                RedisError(kind: .outcomeUnknown, detail: "the connection to \(host):\(port) failed while sending (errno \(errno))"))
        }
        var reader = ReplyReader(descriptor: descriptor)
        guard let reply = reader.reply() else {
            disconnect()
            return .failure(
                RedisError(kind: .outcomeUnknown, detail: "no complete reply from \(host):\(port) within \(timeout) (errno \(errno))"))
        }
        if case .error(let message) = reply { return .failure(RedisError(kind: .server, detail: message)) }
        return .success(reply)
    }

    private func connected() -> Result<Int32, RedisError> {
        let existing = socket.withLock { $0 }
        if existing >= 0 {
            guard Self.isClosedByPeer(existing) else { return .success(existing) }
            // The server closed it (it restarted, or dropped an idle client): a new connection, before anything is sent.
            disconnect()
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Darwin)
        hints.ai_socktype = SOCK_STREAM
        #else
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else {
            return .failure(RedisError(kind: .unreachable, detail: "cannot resolve \(host)"))
        }
        defer { freeaddrinfo(list) }
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        var lastErrno: Int32 = 0
        while let info = candidate {
            candidate = info.pointee.ai_next
            let descriptor = systemSocket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard descriptor >= 0 else { continue }
            let (seconds, attoseconds) = timeout.components
            var limit = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            var one: Int32 = 1
            setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if connect(descriptor, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                socket.withLock { $0 = descriptor }
                return .success(descriptor)
            }
            lastErrno = errno
            close(descriptor)
        }
        return .failure(RedisError(kind: .unreachable, detail: "cannot connect to \(host):\(port) (errno \(lastErrno))"))
    }

    /// Whether the peer has closed `descriptor` (end of file or an error pending), without waiting and without reading.
    private static func isClosedByPeer(_ descriptor: Int32) -> Bool {
        var probe = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&probe, 1, 0) > 0 else { return false }
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) <= 0
    }

    private func disconnect() {
        let descriptor = socket.withLock { descriptor in
            defer { descriptor = -1 }
            return descriptor
        }
        if descriptor >= 0 { close(descriptor) }
    }

    private func writeAll(_ descriptor: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) -> Bool in
            var offset = 0
            while offset < buffer.count {
                let written = systemSend(descriptor, buffer.baseAddress! + offset, buffer.count - offset, noSignal)
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { return false }
                offset += written
            }
            return true
        }
    }
}

/// Reads one RESP2 reply from a blocking socket.
private struct ReplyReader {
    let descriptor: Int32
    private var buffer = [UInt8]()
    private var index = 0

    init(descriptor: Int32) { self.descriptor = descriptor }

    mutating func reply() -> RedisReply? {
        guard let line = line(), let kind = line.first else { return nil }
        let rest = String(decoding: line.dropFirst(), as: UTF8.self)
        switch kind {
        case UInt8(ascii: "+"): return .simple(rest)
        case UInt8(ascii: "-"): return .error(rest)
        case UInt8(ascii: ":"): return Int(rest).map(RedisReply.integer)
        case UInt8(ascii: "$"):
            guard let length = Int(rest) else { return nil }
            guard length >= 0 else { return .bulk(nil) }
            guard let bytes = take(length + 2) else { return nil }
            return .bulk(Data(bytes.dropLast(2)))
        case UInt8(ascii: "*"):
            guard let count = Int(rest) else { return nil }
            guard count >= 0 else { return .array(nil) }
            var items: [RedisReply] = []
            for _ in 0..<count {
                guard let item = reply() else { return nil }
                items.append(item)
            }
            return .array(items)
        default: return nil
        }
    }

    /// The bytes up to the next CRLF (without it).
    private mutating func line() -> ArraySlice<UInt8>? {
        var searched = index
        while true {
            while searched + 1 < buffer.count {
                if buffer[searched] == 13, buffer[searched + 1] == 10 {
                    let line = buffer[index..<searched]
                    index = searched + 2
                    return line
                }
                searched += 1
            }
            guard fill() else { return nil }
        }
    }

    private mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
        while buffer.count - index < count {
            guard fill() else { return nil }
        }
        defer { index += count }
        return buffer[index..<(index + count)]
    }

    private mutating func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = recv(descriptor, &chunk, chunk.count, 0)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return false }
            buffer.append(contentsOf: chunk[0..<count])
            return true
        }
    }
}
