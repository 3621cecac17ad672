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

import DFU
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
    func currentEnumerations() async -> [StandInAttachedDevice]
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
            + (errno == EADDRINUSE ? " (another `keyline sim serve` is serving it: stop it or choose another --socket)" : "")
    }
}

/// Serves a `StandInFleet` to libusb stand-in clients on a Unix socket. Every connection gets its
/// own thread: socket I/O and the wait for a device's answer block that thread only, never
/// Swift's cooperative pool.
public final class StandInServer: @unchecked Sendable {
    public let socketPath: String
    private let fleet: any StandInFleet
    private let lock = NSLock()
    private var listenFD: Int32 = -1
    private var connectionFDs: Set<Int32> = []
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
    public func stop() {
        let (fd, connections) = lock.withLock { () -> (Int32, Set<Int32>) in
            stopped = true
            let result = (listenFD, connectionFDs)
            listenFD = -1
            return result
        }
        if fd >= 0 {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
            unlink(socketPath)
        }
        for connection in connections { shutdown(connection, Int32(SHUT_RDWR)) }
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
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return  // closed by stop()
            }
            let accepted = lock.withLock { () -> Bool in
                guard !stopped else { return false }
                connectionFDs.insert(fd)
                return true
            }
            guard accepted else { close(fd); return }
            let thread = Thread { [self] in
                let connection = StandInConnection(fd: fd, fleet: fleet, registry: registry, accessDenied: accessDenied)
                connection.serve()
                lock.withLock { _ = connectionFDs.remove(fd) }
                close(fd)
            }
            thread.name = "standin-connection"
            thread.start()
        }
    }
}

// MARK: - one client connection

/// Serves one stand-in connection until the client closes it. Runs on its own thread.
final class StandInConnection: @unchecked Sendable {
    private let fd: Int32
    private let fleet: any StandInFleet
    private let registry: DeviceRegistry
    private let accessDenied: Set<USBPortPath>
    /// This connection's claim owner token (one libusb handle).
    private let owner = SimulatedHandle.makeOwner()

    init(fd: Int32, fleet: any StandInFleet, registry: DeviceRegistry, accessDenied: Set<USBPortPath>) {
        self.fd = fd
        self.fleet = fleet
        self.registry = registry
        self.accessDenied = accessDenied
    }

    func serve() {
        defer { registry.releaseAll(by: owner) }
        while let request = readFrame() {
            let (result, payload) = handle(request)
            var reply = WireWriter()
            reply.u32(UInt32(bitPattern: result))
            reply.bytes(payload)
            guard writeFrame(reply.data) else { return }
        }
    }

    private func handle(_ body: [UInt8]) -> (Int32, [UInt8]) {
        var reader = WireReader(body)
        guard let op = reader.u8(), let id = reader.u32() else { return (LibUSBStatus.invalidParam, []) }
        switch op {
        case 1: return list()
        case 2:
            guard let entry = registry.entry(id) else { return (LibUSBStatus.noDevice, []) }
            return (accessDenied.contains(entry.device.portPath) ? LibUSBStatus.access : 0, [])
        case 3:
            registry.releaseAll(by: owner)
            return (0, [])
        case 4:
            guard let interface = reader.u8() else { return (LibUSBStatus.invalidParam, []) }
            return (registry.claim(id, interface: interface, by: owner), [])
        case 5:
            guard let interface = reader.u8() else { return (LibUSBStatus.invalidParam, []) }
            return (registry.release(id, interface: interface, by: owner), [])
        case 6:
            guard let interface = reader.u8(), let alternate = reader.u8() else { return (LibUSBStatus.invalidParam, []) }
            return (selectAlternate(id, interface: interface, alternate: alternate), [])
        case 7:
            guard let requestType = reader.u8(), let request = reader.u8(), let value = reader.u16(),
                  let index = reader.u16(), let length = reader.u16(), let timeoutMS = reader.u32()
            else { return (LibUSBStatus.invalidParam, []) }
            let setup = ControlSetup(requestType: requestType, request: request, value: value, index: index, length: length)
            let data = setup.isDeviceToHost ? [] : reader.rest()
            guard setup.isDeviceToHost || data.count == Int(length) else { return (LibUSBStatus.invalidParam, []) }
            return control(id, setup: setup, data: data, timeout: .milliseconds(Int(timeoutMS == 0 ? UInt32(60_000) : timeoutMS)))
        case 8: return (reset(id), [])
        default: return (LibUSBStatus.invalidParam, [])
        }
    }

    private func list() -> (Int32, [UInt8]) {
        let fleet = self.fleet
        let entries = registry.update(with: waitFor { await fleet.currentEnumerations() })
        var writer = WireWriter()
        var count: Int32 = 0
        for var entry in entries {
            if entry.deviceDescriptor == nil || entry.configuration == nil {
                guard let (device, configuration) = readDescriptors(entry.device.transport) else {
                    // A device that cannot answer GET_DESCRIPTOR is not enumerated (as on a host).
                    continue
                }
                registry.storeDescriptors(entry.id, device: device, configuration: configuration)
                entry.deviceDescriptor = device
                entry.configuration = configuration
            }
            let ports = entry.device.portPath.ports.prefix(7)
            writer.u32(entry.id)
            writer.u8(entry.device.portPath.bus)
            writer.u8(entry.address)
            writer.u8(UInt8(ports.count))
            writer.bytes(Array(ports) + Array(repeating: 0, count: 7 - ports.count))
            writer.bytes(entry.deviceDescriptor!)
            writer.u16(UInt16(entry.configuration!.count))
            writer.bytes(entry.configuration!)
            count += 1
        }
        return (count, writer.data)
    }

    /// The device descriptor and configuration 0, read like a host does at enumeration
    /// (USB 2.0 §9.4.3): the 9-byte header first for wTotalLength, then the whole thing.
    private func readDescriptors(_ transport: any ControlTransport) -> ([UInt8], [UInt8])? {
        func get(_ type: UInt8, _ length: UInt16) -> [UInt8]? {
            let setup = ControlSetup(requestType: 0x80, request: 6, value: UInt16(type) << 8, index: 0, length: length)
            return try? perform(transport) { () async throws(USBTransferError) -> [UInt8] in
                try await transport.control(setup, data: [], timeout: .seconds(1))
            } blocking: { (blocking) throws(USBTransferError) -> [UInt8] in
                try blocking.controlBlocking(setup, data: [], timeout: .seconds(1))
            }
        }
        guard let device = get(1, 18), device.count == 18, device[1] == 1,
              let header = get(2, 9), header.count == 9, header[1] == 2 else { return nil }
        let total = UInt16(header[2]) | UInt16(header[3]) << 8
        guard let configuration = get(2, total), configuration.count == Int(total) else { return nil }
        return (device, configuration)
    }

    private func selectAlternate(_ id: UInt32, interface: UInt8, alternate: UInt8) -> Int32 {
        guard let entry = registry.entry(id) else { return LibUSBStatus.noDevice }
        // libusb requires the interface to be claimed first (LIBUSB_ERROR_NOT_FOUND otherwise).
        guard registry.holds(id, interface: interface, owner: owner) else { return LibUSBStatus.notFound }
        let transport = entry.device.transport
        do throws(USBTransferError) {
            try perform(transport) { () async throws(USBTransferError) in
                try await transport.selectAlternateSetting(interface: interface, alternateSetting: alternate)
            } blocking: { (blocking) throws(USBTransferError) in
                try blocking.selectAlternateSettingBlocking(interface: interface, alternateSetting: alternate)
            }
            return 0
        } catch {
            if error == .disconnected { registry.remove(id) }
            return LibUSBStatus.code(for: error)
        }
    }

    private func control(_ id: UInt32, setup: ControlSetup, data: [UInt8], timeout: Duration) -> (Int32, [UInt8]) {
        guard let entry = registry.entry(id) else { return (LibUSBStatus.noDevice, []) }
        let transport = entry.device.transport
        do throws(USBTransferError) {
            let bytes = try perform(transport) { () async throws(USBTransferError) -> [UInt8] in
                try await transport.control(setup, data: data, timeout: timeout)
            } blocking: { (blocking) throws(USBTransferError) -> [UInt8] in
                try blocking.controlBlocking(setup, data: data, timeout: timeout)
            }
            if setup.isDeviceToHost {
                let answer = Array(bytes.prefix(Int(setup.length)))
                return (Int32(answer.count), answer)
            }
            return (Int32(setup.length), [])
        } catch {
            if error == .disconnected { registry.remove(id) }
            return (LibUSBStatus.code(for: error), [])
        }
    }

    /// libusb_reset_device: a resettable device re-enumerates, which libusb reports as
    /// LIBUSB_ERROR_NOT_FOUND; any other device just stays as it is.
    private func reset(_ id: UInt32) -> Int32 {
        guard let entry = registry.entry(id) else { return LibUSBStatus.noDevice }
        guard let resettable = entry.device.transport as? any BlockingControlTransport else { return 0 }
        do throws(USBTransferError) {
            try resettable.resetDevice()
        } catch {
            return LibUSBStatus.code(for: error)
        }
        registry.remove(id)
        return LibUSBStatus.notFound
    }

    /// Runs one device operation on this connection's thread: directly if the transport can
    /// block, otherwise by waiting for its async form.
    private func perform<T: Sendable>(_ transport: any ControlTransport,
                                      async operation: @escaping @Sendable () async throws(USBTransferError) -> T,
                                      blocking: (any BlockingControlTransport) throws(USBTransferError) -> T) throws(USBTransferError) -> T {
        if let direct = transport as? any BlockingControlTransport {
            return try blocking(direct)
        }
        let outcome = waitFor { () -> Result<T, USBTransferError> in
            do throws(USBTransferError) {
                return .success(try await operation())
            } catch { return .failure(error) }
        }
        return try outcome.get()
    }

    // MARK: framing

    private func readFrame() -> [UInt8]? {
        guard let header = readExactly(4) else { return nil }
        let length = Int(UInt32(header[0]) | UInt32(header[1]) << 8 | UInt32(header[2]) << 16 | UInt32(header[3]) << 24)
        guard length >= 5, length <= 1 << 20 else { return nil }
        return readExactly(length)
    }

    private func readExactly(_ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            done += n
        }
        return buffer
    }

    private func writeFrame(_ body: [UInt8]) -> Bool {
        var frame = WireWriter()
        frame.u32(UInt32(body.count))
        frame.bytes(body)
        let bytes = frame.data
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            done += n
        }
        return true
    }
}
