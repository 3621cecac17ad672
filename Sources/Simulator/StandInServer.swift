// The simulator's side of the libusb stand-in (Sources/libusb-standin/standin.c): serves a fleet
// of simulated devices over a Unix socket, so that dfu-util and keyline's `USB` target, loaded
// with the stand-in as libusb-1.0.so.0, see them as USB devices.
//
// Wire protocol (version 1) — keep identical to the comment at the top of standin.c.
//
// Unix stream socket. Every message is a frame: u32 length (of what follows), then the body.
// All integers little-endian. The client sends one request and reads one reply; a connection
// carries one request at a time. The stand-in uses one connection per libusb context (device
// lists) and one per open device handle, so transfers to different devices run in parallel.
//
// Request body:  u8 op, u32 device id, then per op:
//   1 LIST       (device id 0)          -> result = number of devices; payload = per device:
//                                          u32 id, u8 bus, u8 address, u8 port count,
//                                          u8 ports[7], u8 device descriptor[18],
//                                          u16 config length, config descriptor bytes
//                                          (configuration 0, wTotalLength bytes, raw USB format)
//   2 OPEN                              -> result 0 or an error (LIBUSB_ERROR_ACCESS for a port
//                                          the server denies, like a missing udev rule)
//   3 CLOSE                             -> result 0 (releases this connection's claims)
//   4 CLAIM      u8 interface           -> 0, or LIBUSB_ERROR_BUSY if another handle holds it
//   5 RELEASE    u8 interface           -> 0 or LIBUSB_ERROR_NOT_FOUND
//   6 SET_ALT    u8 interface, u8 alt   -> 0 or an error
//   7 CONTROL    u8 bmRequestType, u8 bRequest, u16 wValue, u16 wIndex, u16 wLength,
//                u32 timeout ms, then wLength data bytes if host-to-device
//                                       -> result = bytes transferred or an error;
//                                          payload = the data read if device-to-host
//   8 RESET                             -> 0, or LIBUSB_ERROR_NOT_FOUND if the device
//                                          re-enumerated (as libusb_reset_device reports it)
// Reply body:    i32 result (>= 0 success, < 0 a libusb_error code), then the payload.
// A device id names one enumeration of one device: after a re-enumeration (normal -> DFU mode,
// leaving DFU, reset) the same physical device gets a new id and the old id answers
// LIBUSB_ERROR_NO_DEVICE.

import DeviceBus
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the stand-in server serves: the devices attached right now. Descriptors are not part of
/// it: the server reads them from each device with GET_DESCRIPTOR, as a USB host does.
public protocol StandInFleet: Sendable {
    /// The device enumerations on the bus at this moment, in any order.
    ///
    /// Synchronous on purpose: the server's connection threads call it, and a thread that waited
    /// for a task on the cooperative pool would stall (dfu-util blocked in its probe) whenever
    /// the pool's few threads are busy — as they are on a 2-core station or a loaded test host.
    func currentEnumerations() -> [StandInAttachedDevice]
}

/// One enumeration of one attached device.
public struct StandInAttachedDevice: Sendable {
    /// Where it is plugged in; stays the same across re-enumerations.
    public var portPath: USBPortPath
    /// Changes every time the device (re-)enumerates (normal → DFU mode, leaving DFU, reset).
    public var enumeration: UInt64
    /// The bus address of this enumeration, if the fleet assigns one; otherwise the server does.
    public var address: UInt8?
    /// Endpoint 0 of this enumeration. After a re-enumeration it answers `.disconnected`.
    public var transport: any ControlTransport

    public init(portPath: USBPortPath, enumeration: UInt64, address: UInt8? = nil, transport: any ControlTransport) {
        self.portPath = portPath
        self.enumeration = enumeration
        self.address = address
        self.transport = transport
    }
}

/// A transport the server can drive straight from its connection thread (no task hop per
/// transfer; the device's latency sleeps that thread), and reset like libusb_reset_device.
public protocol BlockingControlTransport: ControlTransport {
    func controlBlocking(_ setup: ControlSetup, data: [UInt8], timeout: Duration) throws(USBTransferError) -> [UInt8]
    func selectAlternateSettingBlocking(interface: UInt8, alternateSetting: UInt8) throws(USBTransferError)
    /// A USB port reset; the device re-enumerates and this transport is dead afterwards.
    func resetDevice() throws(USBTransferError)
}

/// Why the server could not start.
public struct StandInServerError: Error, Sendable, CustomStringConvertible {
    public var socketPath: String
    public var operation: String
    public var errno: Int32

    public var description: String {
        "cannot \(operation) the simulator socket \(socketPath): \(String(cString: strerror(errno)))"
            + (errno == EADDRINUSE ? " (another `keyline-sim serve` is serving it: stop it or choose another --socket)" : "")
    }
}

/// Serves a `StandInFleet` to libusb stand-in clients on a Unix socket. Every connection gets its
/// own thread: socket I/O and the wait for a device's answer block that thread only, never
/// Swift's cooperative pool.
public final class StandInServer: @unchecked Sendable {
    public let socketPath: String
    private let fleet: any StandInFleet
    private let lock = NSLock()
    /// Owned by the accept thread, which closes it on its way out (under `lock`, so `stop()`
    /// never shuts down a number already closed and perhaps reused); -1 once closed.
    private var listenFD: Int32 = -1
    /// The live connections; each owns its descriptor (see `StandInConnection.requestStop`).
    private var connections: [ObjectIdentifier: StandInConnection] = [:]
    private var stopped = false
    private let registry = DeviceRegistry()
    private let accessDenied: Set<USBPortPath>

    /// - Parameter accessDenied: ports whose devices this host may list but not open, as with a
    ///   missing udev rule on Linux (libusb_open answers LIBUSB_ERROR_ACCESS).
    public init(socketPath: String, fleet: any StandInFleet, accessDenied: Set<USBPortPath> = []) {
        self.socketPath = socketPath
        self.fleet = fleet
        self.accessDenied = accessDenied
    }

    /// Binds the socket (replacing a stale socket file) and starts accepting on its own thread.
    public func start() throws(StandInServerError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw StandInServerError(socketPath: socketPath, operation: "use", errno: ENAMETOOLONG)  // sun_path holds 107 bytes
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw StandInServerError(socketPath: socketPath, operation: "create", errno: errno) }
        // A socket file left by a previous run that nobody listens on any more is stale.
        var info = stat()
        if lstat(socketPath, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK, !Self.someoneListens(on: address) {
            unlink(socketPath)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw StandInServerError(socketPath: socketPath, operation: "bind", errno: code)
        }
        guard listen(fd, 64) == 0 else {
            let code = errno
            close(fd)
            throw StandInServerError(socketPath: socketPath, operation: "listen on", errno: code)
        }
        lock.withLock { listenFD = fd }
        let thread = Thread { [self] in acceptLoop(fd) }
        thread.name = "standin-accept"
        thread.start()
    }

    /// Stops accepting, drops every connection (clients see their devices disconnect) and
    /// removes the socket file.
    ///
    /// Never touches a raw descriptor number another thread may have closed (and the process
    /// reused, e.g. for a libpq socket): the listening socket is shut down under the lock its
    /// closer takes, and each connection is asked to stop through its own state.
    public func stop() {
        let (listening, live) = lock.withLock { () -> (Bool, [StandInConnection]) in
            stopped = true
            // shutdown wakes the accept thread (accept fails), which then closes the socket.
            if listenFD >= 0 { shutdown(listenFD, Int32(SHUT_RDWR)) }
            return (listenFD >= 0, Array(connections.values))
        }
        if listening { unlink(socketPath) }
        for connection in live { connection.requestStop() }
    }

    private static func someoneListens(on address: sockaddr_un) -> Bool {
        #if canImport(Glibc)
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let probe = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard probe >= 0 else { return false }
        defer { close(probe) }
        var address = address
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    private func acceptLoop(_ listenFD: Int32) {
        defer {
            lock.withLock {
                close(listenFD)
                self.listenFD = -1
            }
        }
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                let code = errno
                if lock.withLock({ stopped }) { return }  // shut down by stop()
                // A client that hung up before it was accepted, or a process out of descriptors or
                // memory for a moment, must not end the server for every other client: try again.
                // Anything else (a bad listener) would fail forever: the loop ends.
                switch code {
                case EINTR, ECONNABORTED, EPROTO: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM: Thread.sleep(forTimeInterval: 0.01); continue
                default: return
                }
            }
            let connection = StandInConnection(fd: fd, fleet: fleet, registry: registry, accessDenied: accessDenied)
            let accepted = lock.withLock { () -> Bool in
                guard !stopped else { return false }
                connections[ObjectIdentifier(connection)] = connection
                return true
            }
            guard accepted else { connection.closeSocket(); return }
            let thread = Thread { [self] in
                connection.serve()
                lock.withLock { _ = connections.removeValue(forKey: ObjectIdentifier(connection)) }
                connection.closeSocket()
            }
            thread.name = "standin-connection"
            thread.start()
        }
    }
}
