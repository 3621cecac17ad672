import ParticlePlatform
import DeviceKeys
import FailurePolicy
import Foundation
import ParticleDevice
import Simulator
import Testing

/// A key on a device is never silently replaced: the write is told what it replaces and refuses,
/// leaving the slot byte-identical, when the device holds anything else.
@Suite struct GuardedKeyWriteTests {
    static let platforms: [Platform] = [.photon, .boron]

    static func open(_ platform: Platform, seed: UInt64 = 1) async throws -> (SimulatedDevice, ParticleDFUDevice) {
        let device = try SimulatedDevice(platform: platform, timeScale: 0, seed: seed)
        let particle = try await ParticleDFUDevice.open(try #require(device.transport), port: port(4))
        return (device, particle)
    }

    /// Tries the write and checks the refusal: reason, message (device, port, both sides, no key
    /// bytes) and a slot byte-identical to before.
    static func expectRefusal(_ particle: ParticleDFUDevice, _ device: SimulatedDevice, writing key: DevicePrivateKey,
                              replacing expected: ExpectedDeviceKey, found: String,
                              sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let before = device.privateKeySlot()
        let error = await #expect(throws: ParticleDeviceError.self, sourceLocation: sourceLocation) {
            try await particle.writePrivateKey(key, replacing: expected)
        }
        guard case .unexpectedKey(let reported)? = error?.reason else {
            Issue.record("expected an unexpected-key refusal, got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        #expect(reported == found, sourceLocation: sourceLocation)
        #expect(device.privateKeySlot() == before, "the slot changed", sourceLocation: sourceLocation)
        let message = error?.description ?? ""
        #expect(error?.step == .writeKey, sourceLocation: sourceLocation)
        #expect(message.contains(device.deviceID) && message.contains(particle.port?.description ?? "no port"), "\(message)", sourceLocation: sourceLocation)
        #expect(message.contains(expected.description), "\(message)", sourceLocation: sourceLocation)
        if found != "blank" && found != "corrupt" { #expect(message.contains(found), "\(message)", sourceLocation: sourceLocation) }
        for secret in [key.der, Array(before.prefix(64))] {
            #expect(!message.contains(secret.map { String(format: "%02x", $0) }.joined().prefix(32)), sourceLocation: sourceLocation)
        }
        #expect(error?.failureClass == .badDevice, sourceLocation: sourceLocation)
    }

    @Test(arguments: platforms)
    func blankExpectedButTheDeviceHoldsAKey(platform: Platform) async throws {
        let (device, particle) = try await Self.open(platform)
        let present = try DevicePrivateKey.generate(platform.keyAlgorithm)
        try await particle.writePrivateKey(present, replacing: .blank)
        try await Self.expectRefusal(particle, device, writing: try DevicePrivateKey.generate(platform.keyAlgorithm),
                                     replacing: .blank, found: present.publicKey.fingerprint)
        #expect(try await particle.readPrivateKey().der == present.der)
    }

    @Test(arguments: platforms)
    func keyExpectedButTheSlotIsBlank(platform: Platform) async throws {
        let (device, particle) = try await Self.open(platform)
        let recorded = try DevicePrivateKey.generate(platform.keyAlgorithm)
        try await Self.expectRefusal(particle, device, writing: try DevicePrivateKey.generate(platform.keyAlgorithm),
                                     replacing: .fingerprint(recorded.publicKey.fingerprint), found: "blank")
        #expect(device.privateKeySlot().allSatisfy { $0 == 0xFF })
    }

    @Test(arguments: platforms)
    func wrongFingerprintIsRefused(platform: Platform) async throws {
        let (device, particle) = try await Self.open(platform)
        let present = try DevicePrivateKey.generate(platform.keyAlgorithm)
        try await particle.writePrivateKey(present, replacing: .blank)
        let other = try DevicePrivateKey.generate(platform.keyAlgorithm)
        try await Self.expectRefusal(particle, device, writing: try DevicePrivateKey.generate(platform.keyAlgorithm),
                                     replacing: .fingerprint(other.publicKey.fingerprint), found: present.publicKey.fingerprint)
    }

    @Test(arguments: platforms)
    func corruptSlotIsRefusedWhateverWasExpected(platform: Platform) async throws {
        let (device, particle) = try await Self.open(platform)
        device.corruptKeySlot(seed: 7)
        let key = try DevicePrivateKey.generate(platform.keyAlgorithm)
        try await Self.expectRefusal(particle, device, writing: key, replacing: .blank, found: "corrupt")
        try await Self.expectRefusal(particle, device, writing: key, replacing: .fingerprint(key.publicKey.fingerprint), found: "corrupt")
        guard case .corrupt(.corruptSlot) = try await particle.readKeySlot() else {
            Issue.record("a corrupt slot must read as corrupt")
            return
        }
    }

    /// Device OS checks byte 0 only (`had_key = keyBuffer[0] != 0xFF`): an all-zero slot is not
    /// "no key" to it (it would never regenerate), so it is corrupt here too, never blank.
    @Test func allZeroSlotIsCorruptNotBlank() async throws {
        let (device, particle) = try await Self.open(.boron)
        let slot = Platform.boron.privateKeySlot
        try device.writeMemory(alt: 1, address: UInt32(slot.offset), bytes: [UInt8](repeating: 0, count: slot.size))
        try await Self.expectRefusal(particle, device, writing: try DevicePrivateKey.generate(.ec), replacing: .blank, found: "corrupt")
    }

    @Test(arguments: platforms)
    func theRightExpectationWritesAndReadsBack(platform: Platform) async throws {
        let (device, particle) = try await Self.open(platform)
        guard case .blank = try await particle.readKeySlot() else { Issue.record("a new device is blank"); return }

        let first = try DevicePrivateKey.generate(platform.keyAlgorithm)
        try await particle.writePrivateKey(first, replacing: .blank)
        guard case .key(let read) = try await particle.readKeySlot() else { Issue.record("no key after the write"); return }
        #expect(read.der == first.der)
        let slot = device.privateKeySlot()
        #expect(Array(slot.prefix(first.der.count)) == first.der)
        #expect(slot.dropFirst(first.der.count).allSatisfy { $0 == 0xFF })

        // Repeating the same write (a resumed run) is accepted and leaves the slot as it is.
        let erased = device.statistics.sectorsErased
        try await particle.writePrivateKey(first, replacing: .fingerprint(first.publicKey.fingerprint.uppercased()))
        #expect(device.statistics.sectorsErased == erased)
        #expect(device.privateKeySlot() == slot)

        // Rekeying names the key it replaces.
        let second = try DevicePrivateKey.generate(platform.keyAlgorithm)
        try await particle.writePrivateKey(second, replacing: .fingerprint(first.publicKey.fingerprint))
        #expect(try await particle.readPrivateKey().der == second.der)
        #expect(device.privateKeySlot().dropFirst(second.der.count).allSatisfy { $0 == 0xFF })
    }

    /// The device's own key (generated by Device OS at its first cloud connection, on Gen3) can be
    /// the expectation.
    @Test func deviceGeneratedKeyCanBeNamedAndKept() async throws {
        let fleet = try SimulatedFleet(timeScale: 0.001, seed: 11)
        let device = try fleet.add(.argon, at: port(2), mode: .normal)
        #expect(device.connectToCloud())
        let normal = try #require(fleet.attachedDevices().first)
        let particle = try await ParticleModeSwitch.enterDFU(normal.transport, identity: normal.identity, locator: fleet)
        guard case .key(let own) = try await particle.readKeySlot() else { Issue.record("the device made no key"); return }
        try await Self.expectRefusal(particle, device, writing: try DevicePrivateKey.generate(.ec), replacing: .blank,
                                     found: own.publicKey.fingerprint)
        try await particle.writePrivateKey(own, replacing: .fingerprint(own.publicKey.fingerprint))
        #expect(try await particle.readPrivateKey().der == own.der)
    }

    /// Protected devices refuse DFU reads: the guarded write fails before writing, as a bad device.
    @Test func protectedDeviceIsABadDevice() async throws {
        let device = try SimulatedDevice(platform: .boron, protected: true, timeScale: 0, seed: 3)
        let particle = try await ParticleDFUDevice.open(try #require(device.transport), port: port(4))
        let error = await #expect(throws: ParticleDeviceError.self) {
            try await particle.writePrivateKey(try DevicePrivateKey.generate(.ec), replacing: .blank)
        }
        #expect(error?.failureClass == .badDevice)
        #expect(device.privateKeySlot().allSatisfy { $0 == 0xFF })
    }

    /// An unplugged device is retried (it may come back); the key slot is untouched.
    @Test func disconnectDuringTheReadIsRetryable() async throws {
        let (device, particle) = try await Self.open(.boron)
        device.setFaults(SimulatedFaults(disconnectAfterTransfers: 1))
        let error = await #expect(throws: ParticleDeviceError.self) {
            try await particle.writePrivateKey(try DevicePrivateKey.generate(.ec), replacing: .blank)
        }
        #expect(error?.failureClass == .retryable, "\(String(describing: error))")
        #expect(device.privateKeySlot().allSatisfy { $0 == 0xFF })
    }
}
