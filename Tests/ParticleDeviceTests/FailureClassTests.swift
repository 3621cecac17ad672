import DFU
import DeviceBus
import ParticlePlatform
import DeviceKeys
import FailurePolicy
import ParticleDevice
import Testing

/// Each layer classifies its own failures (retryable / needs operator / bad device / bad input),
/// so the runner and the one-shot commands decide the same way.
@Suite struct FailureClassTests {
    static let port = USBPortPath(bus: 1, ports: [1, 3])

    @Test func dfuErrors() {
        func dfu(_ reason: DFUError.Reason) -> DFUError { DFUError(operation: .download, alt: 1, reason: reason) }
        #expect(dfu(.transfer(.timeout, request: nil)).failureClass == .retryable)
        #expect(dfu(.transfer(.disconnected, request: nil)).failureClass == .retryable)
        #expect(dfu(.transfer(.stall, request: nil)).failureClass == .badDevice)
        #expect(dfu(.deviceStatus(.errVendor, state: .dfuError)).failureClass == .badDevice)
        #expect(dfu(.deviceStatus(.errWrite, state: .dfuError)).failureClass == .badDevice)
        #expect(dfu(.deviceProtected).failureClass == .badDevice)
        #expect(dfu(.malformedReply("short")).failureClass == .badDevice)
        #expect(dfu(.outsideMemoryLayout(length: 4)).failureClass == .badInput)
        #expect(dfu(.verifyMismatch(firstDifferenceAt: 0)).failureClass == .retryable)
    }

    @Test func particleDeviceErrors() {
        func device(_ reason: ParticleDeviceError.Reason) -> ParticleDeviceError {
            ParticleDeviceError(step: .writeKey, deviceID: "e00fce68a1b2c3d4e5f60718", port: Self.port, reason: reason)
        }
        let match = USBDeviceMatch(serialNumber: "e00fce68a1b2c3d4e5f60718", vendorID: 0x2B04, productIDs: [0xD00D])
        #expect(device(.transfer(.timeout)).failureClass == .retryable)
        #expect(device(.transfer(.disconnected)).failureClass == .retryable)
        #expect(device(.locator(.timedOut(match, after: .seconds(10)))).failureClass == .retryable)
        #expect(device(.dfu(DFUError(operation: .upload, reason: .transfer(.timeout, request: nil)))).failureClass == .retryable)
        #expect(device(.dfu(DFUError(operation: .upload, reason: .deviceProtected))).failureClass == .badDevice)
        #expect(device(.platformMismatch(expected: "boron", found: "argon")).failureClass == .badDevice)
        #expect(device(.key(.corruptSlot(slotSize: 192, reason: "x"))).failureClass == .badDevice)
        #expect(device(.unexpectedKey(found: "corrupt")).failureClass == .badDevice)
        #expect(device(.keySlot(.unsupportedKeySize(platform: "photon", bits: 2048))).failureClass == .badInput)
        // Through `any Error`, as the runner sees it.
        let error: any Error = device(.transfer(.disconnected))
        #expect(error.failureClass == .retryable)
    }

    @Test func keyErrors() {
        #expect(DeviceKeyError.corruptSlot(slotSize: 612, reason: "x").failureClass == .badDevice)
        #expect(DeviceKeyError.truncatedPKCS8InSlot(keyLength: 138, slotSize: 121).failureClass == .badDevice)
        #expect(DeviceKeyError.malformedPEM(reason: "x").failureClass == .badInput)
        #expect(DeviceKeyError.notAPrivateKey.failureClass == .badInput)
        #expect(DeviceKeyError.encryptedPEM.failureClass == .badInput)
        #expect(KeySlotError.wrongAlgorithm(platform: "boron", expected: .ec, found: .rsa).failureClass == .badInput)
    }

    @Test func unexpectedKeyMessageNamesBothSides() {
        let fingerprint = String(repeating: "ab", count: 32)
        let error = ParticleDeviceError(step: .writeKey, deviceID: "e00fce68a1b2c3d4e5f60718", port: Self.port,
                                        reason: .unexpectedKey(found: fingerprint), expectedKey: .blank)
        #expect(error.description.contains("e00fce68a1b2c3d4e5f60718"))
        #expect(error.description.contains(Self.port.description))
        #expect(error.description.contains("expected a blank slot (no key) but found the key with public key SHA-256 \(fingerprint)"))
    }
}
