import CLibUSB
import DeviceBus

/// The libusb side of the device-bus seam. Enumeration lists without opening, then reads the
/// serial only of attachments (port + bus address) not seen before.
extension USBContext: DeviceBus {
    public func enumerate() async throws -> [BusDevice] {
        try await worker.perform { () throws(USBError) -> [BusDevice] in
            guard let handle = self.initializedHandle() else { return [] }
            let listed = try Self.enumerate(handle, readStrings: false)
            defer { listed.forEach { libusb_unref_device($0.device) } }
            var known: [Attachment: String?] = [:]
            var devices: [BusDevice] = []
            for entry in listed {
                let attachment = Attachment(entry.info)
                // Not readable now (still settling, access denied): listed without a serial, tried
                // again on the next enumeration.
                let serial = self.serials[attachment] ?? Self.readSerial(entry)
                if let serial { known[attachment] = serial }
                devices.append(BusDevice(identity: USBDeviceIdentity(port: entry.info.portPath, vendorID: entry.info.vendorID,
                                                                     productID: entry.info.productID, serialNumber: serial ?? nil),
                                         mode: entry.info.mode, address: entry.info.address))
            }
            // Attachments gone from the bus are forgotten: a re-enumeration is read afresh.
            self.serials = known
            return devices.sorted { $0.port != $1.port ? $0.port < $1.port : $0.address < $1.address }
        }
    }

    public func open(_ device: BusDevice) async throws -> any ClosableControlTransport {
        let serial = device.identity.serialNumber
        return try await open(port: device.port, address: device.address) { info in
            var info = info
            info.serialNumber = serial
            return info
        }
    }

    /// `.some(serial)` once read (`.some(nil)`: the device has no serial string); nil if the
    /// device could not be opened or did not answer.
    private static func readSerial(_ entry: Enumerated) -> String?? {
        guard entry.serialIndex != 0 else { return .some(nil) }
        var handle: OpaquePointer?
        guard libusb_open(entry.device, &handle) == 0, let handle else { return nil }
        defer { libusb_close(handle) }
        guard let serial = string(handle, entry.serialIndex) else { return nil }
        return .some(serial)
    }
}

/// Finding a device again after it re-enumerates (normal → DFU after request 50, DFU → normal
/// after leave), for a one-off command: a watcher of its own for this one wait. A station shares
/// one `DeviceBusWatcher` between all its device tasks instead.
extension USBContext: USBDeviceLocator {
    public func waitForDevice(_ match: USBDeviceMatch, timeout: Duration) async throws(USBLocatorError) -> USBOpenedDevice {
        let watcher = DeviceBusWatcher(bus: self, interval: .milliseconds(50))
        watcher.start()
        defer { watcher.stop() }
        return try await watcher.waitForDevice(match, timeout: timeout)
    }
}

extension USBDeviceInfo {
    /// The DFU target's view of this device.
    public var identity: USBDeviceIdentity {
        USBDeviceIdentity(port: portPath, vendorID: vendorID, productID: productID, serialNumber: serialNumber)
    }
}
