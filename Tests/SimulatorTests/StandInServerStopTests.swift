import Foundation
import Simulator
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `StandInServer.stop()` must never shut down a descriptor it does not own. Connection threads
/// close their sockets as clients hang up; the process reuses the lowest free number at once
/// (here: a prober thread opening socket pairs, as libpq opens its socket on a station). A
/// stop() that shuts down numbers copied earlier would cut one of those pairs.
@Suite struct StandInServerStopTests {
    struct NoDevices: StandInFleet {
        func currentEnumerations() -> [StandInAttachedDevice] { [] }
    }

    static let connectionsPerRound = 100
    static let rounds = 100  // without the fix, 5 runs failed by round 8 to 30

    @Test func stopNeverShutsDownADescriptorAnotherThreadReused() async throws {
        for round in 0..<Self.rounds {
            let socketPath = "/tmp/keyline-stop-\(UUID().uuidString.prefix(8)).sock"
            let server = StandInServer(socketPath: socketPath, fleet: NoDevices())
            try server.start()
            defer { unlink(socketPath) }
            // Every client has had one answer: its connection is registered and being served.
            var clients: [Int32] = []
            for _ in 0..<Self.connectionsPerRound { clients.append(try Self.connectAndList(socketPath)) }
            let highest = clients.max()!

            let prober = Prober(below: highest)
            let thread = Thread { prober.run() }
            thread.start()
            for client in clients { close(client) }
            server.stop()
            // Let the connection threads finish closing while the prober takes their numbers.
            try await Task.sleep(for: .milliseconds(30))
            let cut = prober.finish()
            #expect(cut.isEmpty, "round \(round): stop() shut down descriptors it did not own: \(cut)")
            if !cut.isEmpty { return }
        }
    }

    /// Opens socket pairs as fast as it can, keeping those that got a number at or below
    /// `below` (numbers just closed by the server or the clients); then reports which were shut
    /// down by someone else (EOF though nobody wrote or closed the other end).
    final class Prober: @unchecked Sendable {
        private let below: Int32
        private let done = Atomic<Bool>(false)
        private let finished = DispatchSemaphore(value: 0)
        private var kept: [(Int32, Int32)] = []

        init(below: Int32) { self.below = below }

        func run() {
            while !done.load(ordering: .acquiring) {
                var pair: [Int32] = [0, 0]
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { break }
                if min(pair[0], pair[1]) <= below && kept.count < 4000 {
                    kept.append((pair[0], pair[1]))
                } else {
                    close(pair[0])
                    close(pair[1])
                    sched_yield()
                }
            }
            finished.signal()
        }

        func finish() -> [Int32] {
            done.store(true, ordering: .releasing)
            finished.wait()
            var cut: [Int32] = []
            for (a, b) in kept {
                for fd in [a, b] {
                    var byte: UInt8 = 0
                    if recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK)) == 0 { cut.append(fd) }
                }
                close(a)
                close(b)
            }
            return cut
        }
    }

    struct SocketFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// A stand-in client that sent LIST and read the answer.
    static func connectAndList(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketFailure(description: "socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { close(fd); throw SocketFailure(description: "connect \(path): errno \(errno)") }
        // A server that never answers fails the test instead of hanging it.
        var limit = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        // Frame: u32 length 5, then op 1 (LIST) and device id 0 (StandInServer.swift).
        let request: [UInt8] = [5, 0, 0, 0, 1, 0, 0, 0, 0]
        guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else {
            close(fd); throw SocketFailure(description: "send: errno \(errno)")
        }
        // Reply: u32 length 4, i32 result 0 (no devices).
        var reply = [UInt8](repeating: 0, count: 8)
        var got = 0
        while got < reply.count {
            let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, 8 - got, 0) }
            guard n > 0 else { close(fd); throw SocketFailure(description: "recv: \(n) errno \(errno)") }
            got += n
        }
        return fd
    }
}
