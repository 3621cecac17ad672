import DFU

/// Finding a device again after it re-enumerates (normal → DFU after request 50, DFU → normal
/// after leave), by polling libusb's device list: the libusb side of `USBDeviceLocator`.
extension USBContext: USBDeviceLocator {
    public func waitForDevice(_ match: USBDeviceMatch, timeout: Duration) async throws(USBLocatorError) -> USBOpenedDevice {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        // Devices whose serial was read and is someone else's: not opened again while they stay
        // attached. Other devices on the station may be mid-flash; they get no requests from us.
        var otherSerials = Set<Attachment>()
        while true {
            // A failed enumeration (a hub resetting) is retried until the deadline like an absent device.
            if let pass = try? await locate(match, skipping: otherSerials) {
                otherSerials.formUnion(pass.otherSerials)
                if let found = pass.found {
                    do {
                        let device = try await open(found)
                        return USBOpenedDevice(identity: found.identity, transport: device)
                    } catch {
                        // Still settling after enumeration (the stand-in and real hosts both can be):
                        // only a permanent reason is final.
                        if case .accessDenied = error { throw .openFailed(found.identity, error.description) }
                        if case .busy = error { throw .openFailed(found.identity, error.description) }
                    }
                }
            }
            if clock.now >= deadline { throw .timedOut(match, after: timeout) }
            do { try await Task.sleep(for: .milliseconds(50)) } catch { throw .cancelled(match) }
        }
    }
}

extension USBDeviceInfo {
    /// The DFU target's view of this device.
    public var identity: USBDeviceIdentity {
        USBDeviceIdentity(port: portPath, vendorID: vendorID, productID: productID, serialNumber: serialNumber)
    }
}
