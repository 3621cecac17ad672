import DeviceBus

/// Which one attached device a bench command acts on: by serial (the device ID), by port path
/// (e.g. 1-2.3), both, or — with neither — the only device attached.
public struct USBDeviceSelection: Sendable, Hashable {
    public var serial: String?
    public var port: String?

    public init(serial: String?, port: String?) {
        self.serial = serial
        self.port = port
    }

    /// The one matching device; none, or more than one, is `.notFound` saying which.
    public func find(in context: USBContext) async throws(USBError) -> USBDeviceInfo {
        let devices = try await context.devices()
        let matches = devices.filter { device in
            (serial.map { device.serialNumber?.lowercased() == $0.lowercased() } ?? true)
                && (port.map { device.portPath.description == $0 } ?? true)
        }
        guard matches.count == 1, let device = matches.first else {
            let what = [serial.map { "serial \($0)" }, port.map { "port \($0)" }].compactMap { $0 }.joined(separator: " and ")
            if matches.isEmpty { throw USBError.notFound(what: what.isEmpty ? "any device" : what) }
            throw USBError.notFound(what: "exactly one device (\(matches.count) attached; choose one with --serial or --port)")
        }
        return device
    }

    /// The selected device, opened in any mode.
    public func open(in context: USBContext) async throws(USBError) -> (device: USBDevice, info: USBDeviceInfo) {
        let info = try await find(in: context)
        return (try await context.open(info), info)
    }

    /// The selected device, which must be in DFU mode, opened with its DFU interface claimed.
    public func openInDFUMode(in context: USBContext) async throws(USBError) -> (device: USBDevice, info: USBDeviceInfo) {
        let info = try await find(in: context)
        guard info.mode == .dfu else {
            throw USBError.notFound(what: "serial \(info.serialNumber ?? "?") in DFU mode (it is in normal mode on \(info.portPath); run `keyline dfu enter` first)")
        }
        return (try await context.open(info), info)
    }
}

extension USBDeviceInfo {
    /// This enumeration as the device-bus seam sees it.
    public var busDevice: BusDevice { BusDevice(identity: identity, mode: mode, address: address) }
}
