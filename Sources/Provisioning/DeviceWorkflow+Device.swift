import DFU
import DeviceBus
import ParticleDevice

/// The device half of a device's workflow: its one DFU session, found through the station's bus
/// watcher, switched to DFU mode when needed, closed before any re-enumeration, and left at the end.
extension DeviceWorkflow {
    /// Leaves DFU mode. A device already back in normal mode, or already manifesting (a run that
    /// stopped right after asking it to leave), needs nothing more: Particle's bootloaders reset
    /// by themselves ~500 ms after the leave GETSTATUS (USBD_DFU_POLL_TIMEOUT).
    func leave() async throws {
        // Found in normal mode (not switched back to DFU only to leave it again): already left.
        if let device = try await attach(switchingToDFU: false) {
            let failure = await Self.leaveDFU(device)
            await closeSession()
            if let failure { throw failure }
        }
        try await advance(to: .done)
    }

    /// `ParticleDFUDevice.leaveDFU()`, under the name the workflow's tests know.
    static func leaveDFU(_ device: ParticleDFUDevice) async -> ParticleDeviceError? { await device.leaveDFU() }

    static func isAlreadyLeaving(_ error: ParticleDeviceError) -> Bool { ParticleDFUDevice.isAlreadyLeaving(error) }

    // MARK: The device handle

    /// The device in DFU mode, found through the station's one bus watcher (switched from normal
    /// mode first if needed).
    func dfuDevice() async throws -> ParticleDFUDevice {
        guard let device = try await attach(switchingToDFU: true) else {
            throw ProvisioningError.deviceMissing(deviceID: deviceID, waited: context.reenumerationTimeout)
        }
        return device
    }

    /// The device's DFU session, opened on the next listing that shows it in either mode. A
    /// device in normal mode is switched to DFU when `switchingToDFU`, else its handle is closed
    /// and nil returned.
    func attach(switchingToDFU: Bool) async throws -> ParticleDFUDevice? {
        if let session { return session }
        let match = USBDeviceMatch(serialNumber: deviceID, vendorID: platform.vendorID,
                                   productIDs: [platform.normalProductID, platform.dfuProductID],
                                   ports: context.definition.ports.map { Set($0.ports.map(\.path)) })
        let opened: USBOpenedDevice
        do {
            opened = try await context.watcher.waitForDevice(match, timeout: context.reenumerationTimeout)
        } catch {
            throw Self.missing(error, deviceID: deviceID, waited: context.reenumerationTimeout)
        }
        port = opened.identity.port
        let device: ParticleDFUDevice
        if opened.identity.productID == platform.normalProductID {
            guard switchingToDFU else {
                await opened.transport.close()
                return nil
            }
            emit(.stepStarted, step: .enterDFU, message: "switching to DFU mode")
            device = try await ParticleModeSwitch.enterDFU(opened.transport, identity: opened.identity,
                                                           locator: context.watcher, timeout: context.reenumerationTimeout)
            port = device.port ?? port
        } else {
            var failure: ParticleDeviceError?
            var found: ParticleDFUDevice?
            do {
                found = try await ParticleDFUDevice.open(opened.transport, port: opened.identity.port, expecting: platform)
            } catch {
                failure = error
            }
            guard let found else {
                await opened.transport.close()
                throw failure ?? ProvisioningError.deviceMissing(deviceID: deviceID, waited: .zero)
            }
            device = found
        }
        session = device
        return device
    }

    /// A device that never showed up is named as missing; other locator errors say what they say.
    static func missing(_ error: USBLocatorError, deviceID: String, waited: Duration) -> any Error {
        switch error {
        case .timedOut: ProvisioningError.deviceMissing(deviceID: deviceID, waited: waited)
        default: error
        }
    }

    /// Closes the device's handle: no claimed handle is kept across a re-enumeration or a retry.
    func closeSession() async {
        guard let session else { return }
        self.session = nil
        await (session.dfu.transport as? any ClosableControlTransport)?.close()
    }
}
