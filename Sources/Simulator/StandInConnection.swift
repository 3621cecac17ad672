// One client connection of the stand-in server (StandInServer.swift has the wire protocol).

import DeviceBus
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Serves one stand-in connection until the client closes it. Runs on its own thread.
///
/// Owns its socket: `closeSocket()` closes it exactly once, and `requestStop()` shuts it down only
/// while it is still open (both under `fdLock`), so no other thread ever acts on the number
/// after it is closed and possibly reused.
final class StandInConnection: @unchecked Sendable {
    /// Read and written by the serving thread without the lock (only `closeSocket()` invalidates it,
    /// and that runs on the serving thread after serving ends).
    private let fd: Int32
    private let fdLock = NSLock()
    private var isOpen = true
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

    /// Makes a blocked or later read fail, so `serve()` returns; a no-op once closed.
    func requestStop() {
        fdLock.withLock {
            if isOpen { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Closes the socket; only the owner calls it, once serving is over.
    func closeSocket() {
        fdLock.withLock {
            guard isOpen else { return }
            isOpen = false
            _ = close(fd)
        }
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
        let entries = registry.update(with: fleet.currentEnumerations())
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
