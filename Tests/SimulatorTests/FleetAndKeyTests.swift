import DeviceBus
import ParticlePlatform
import DeviceKeys
import Foundation
import ParticleDevice
import Simulator
import Testing

@Suite struct KeyGenerationTests {
    /// Blank DCT → the application generates a key of the platform's kind (Gen2 at start, Gen3 at
    /// its first cloud connection) and writes the derived public key, as Device OS does; a key
    /// already present is kept across restarts.
    @Test(arguments: simulatedPlatforms)
    func blankDeviceGeneratesItsKeyAndKeepsIt(platform: Platform) async throws {
        let fleet = try SimulatedFleet(timeScale: 0.001, seed: 5)
        let device = try fleet.add(platform, at: port(1), mode: .normal)
        if !device.hardware.generatesKeyAtBoot { #expect(device.connectToCloud()) }
        let normal = try #require(fleet.attachedDevices().first)
        #expect(normal.productID == platform.normalProductID && normal.mode == .normal)
        let particle = try await ParticleModeSwitch.enterDFU(normal.transport, identity: normal.identity, locator: fleet)
        #expect(particle.deviceID == device.deviceID)
        #expect(particle.platform == platform)
        #expect(particle.port == port(1))
        #expect(!normal.isAttached)  // the old enumeration is gone

        let key = try await particle.readPrivateKey()
        #expect(key.algorithm == platform.keyAlgorithm)
        #expect(device.statistics.keysGenerated == 1)
        try platform.checkDeviceKey(key)

        // The public-key field the device wrote matches the private key.
        let field = try await particle.readDCT(platform.devicePublicKeySlot, step: .readKey)
        let spki = key.publicKey.spkiDER
        switch platform.cloudProtocol {
        case .tcp:
            #expect(Array(field.prefix(spki.count)) == spki)
            #expect(field.dropFirst(spki.count).allSatisfy { $0 == 0 })
        case .udp:
            #expect(Array(field.suffix(spki.count)) == spki)
            // The 192-byte slot's tail is a copy of the DER's own end (mbedtls writes backwards).
            let slot = try await particle.readPrivateKeySlot()
            #expect(Array(slot.prefix(key.der.count)) == key.der)
            #expect(Array(slot.suffix(192 - key.der.count)) == Array(key.der.suffix(192 - key.der.count)))
        }

        // Leave, let it restart: the key is not regenerated.
        try await particle.leave()
        let again = try await fleet.waitForDevice(
            USBDeviceMatch(serialNumber: device.deviceID, vendorID: 0x2B04, productIDs: [platform.normalProductID]), timeout: .seconds(10))
        let back = try await ParticleModeSwitch.enterDFU(again.transport, identity: again.identity, locator: fleet)
        #expect(try await back.readPrivateKey().der == key.der)
        #expect(device.statistics.keysGenerated == 1)
    }

    @Test(arguments: [Platform.photon, .argon, .p2])
    func hostWrittenKeyAndServerBlobSurviveRestart(platform: Platform) async throws {
        let fleet = try SimulatedFleet(timeScale: 0.001, seed: 6)
        let device = try fleet.add(platform, at: port(2), mode: .dfu)
        let particle = try await ParticleDFUDevice.open(try #require(device.transport), port: port(2))
        let key = try DevicePrivateKey.generate(platform.keyAlgorithm)
        try await particle.writePrivateKey(key, replacing: .blank)
        let blob = pattern(platform.serverKeySlot.slot.size, seed: 1)
        try await particle.writeServerKeyBlob(blob)
        #expect(try await particle.readPrivateKey().publicKey == key.publicKey)
        try await particle.leave()
        let normal = try await fleet.waitForDevice(
            USBDeviceMatch(serialNumber: device.deviceID, vendorID: 0x2B04, productIDs: [platform.normalProductID]), timeout: .seconds(10))
        let back = try await ParticleModeSwitch.enterDFU(normal.transport, identity: normal.identity, locator: fleet)
        #expect(try await back.readPrivateKey().der == key.der)
        #expect(try await back.readServerKeyBlob() == blob)
        #expect(device.statistics.keysGenerated == 0)
    }

    @Test func wrongAlgorithmIsRefused() async throws {
        let device = try SimulatedDevice(platform: .boron, timeScale: 0, seed: 1)
        let particle = try await ParticleDFUDevice.open(try #require(device.transport))
        let rsa = try DevicePrivateKey.generate(.rsa)
        let error = await #expect(throws: ParticleDeviceError.self) { try await particle.writePrivateKey(rsa, replacing: .blank) }
        // Checked as `keyline keys inspect --platform` checks it: a key problem (exit 65), not a
        // protocol error, naming the device.
        guard case .keySlot(.wrongAlgorithm(platform: "boron", expected: .ec, found: .rsa))? = error?.reason else {
            Issue.record("expected a wrong-algorithm key-slot error, got \(String(describing: error))")
            return
        }
        #expect(error?.step == .writeKey)
        #expect(error?.deviceID == device.deviceID)
        #expect(error?.description.contains("keyline keys new --platform boron") == true)
        #expect(device.privateKeySlot().allSatisfy { $0 == 0xFF })
    }
}

@Suite struct FleetTests {
    @Test func changesArePublishedAndOldHandlesDie() async throws {
        let fleet = try SimulatedFleet(timeScale: 0.001, seed: 1)
        let changes = fleet.changes()
        var iterator = changes.makeAsyncIterator()
        let device = try fleet.add(.electron, at: port(7), mode: .normal)
        guard case .attached(let first) = await iterator.next() else { Issue.record("no attach"); return }
        #expect(first.port == port(7) && first.mode == .normal && first.serialNumber == device.deviceID)
        #expect(first.deviceDescriptor.count == 18)
        #expect(fleet.generation == 1)

        try await ParticleControlRequests(transport: first.transport).enterDFUMode()
        guard case .detached(let gonePort, let goneAddress, _) = await iterator.next() else { Issue.record("no detach"); return }
        #expect(gonePort == port(7) && goneAddress == first.address)
        guard case .attached(let second) = await iterator.next() else { Issue.record("no re-attach"); return }
        #expect(second.mode == .dfu && second.productID == Platform.electron.dfuProductID)
        #expect(second.address != first.address)
        #expect(fleet.generation == 3)
        #expect(!first.isAttached && second.isAttached)
        await #expect(throws: USBTransferError.disconnected) {
            _ = try await first.transport.control(ControlSetup(requestType: 0x80, request: 6, value: 0x100, index: 0, length: 18),
                                                  data: [], timeout: .seconds(1))
        }
        #expect(fleet.attachedDevices().map(\.port) == [port(7)])
    }

    @Test func blockingTransportForCallersOnTheirOwnThreads() async throws {
        let fleet = try SimulatedFleet(timeScale: 0.01, seed: 2)
        try fleet.add(.boron, at: port(1))
        let attachment = try #require(fleet.attachedDevices().first)
        let reply: [UInt8] = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { () throws(USBTransferError) -> [UInt8] in
                    try attachment.transport.controlBlocking(
                        ControlSetup(requestType: 0x80, request: 6, value: 0x100, index: 0, length: 18), data: [], timeout: .seconds(1))
                })
            }
        }
        #expect(reply == attachment.deviceDescriptor)
    }

    @Test func observersAndRemoval() async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 3)
        let log = ChangeLog()
        let token = fleet.addObserver(log.record)
        try fleet.add(.argon, at: port(1))
        try fleet.add(.p2, at: port(2))
        #expect(throws: SimulatorError.portInUse(port(2))) { try fleet.add(.boron, at: port(2)) }
        try fleet.remove(at: port(1))
        fleet.removeObserver(token)
        try fleet.remove(at: port(2))
        #expect(log.count == 3)
        #expect(fleet.attachedDevices().isEmpty)
        #expect(throws: SimulatorError.noDevice(port(2))) { try fleet.remove(at: port(2)) }
    }

    @Test func fleetSurvivesARestartFromItsFolder() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-sim-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let key = try DevicePrivateKey.generate(.ec)
        var ids: [String] = []
        do {
            let fleet = try SimulatedFleet(timeScale: 0, directory: folder, seed: 9)
            let boron = try fleet.add(.boron, at: port(1))
            let photon = try fleet.add(.photon, at: port(2))
            ids = [boron.deviceID, photon.deviceID]
            let particle = try await ParticleDFUDevice.open(try #require(boron.transport))
            try await particle.writePrivateKey(key, replacing: .blank)
            try photon.writeMemory(alt: 0, address: 0x0802_0000, bytes: pattern(5000))
            try fleet.save()
        }
        let restarted = try SimulatedFleet(timeScale: 0, directory: folder)
        #expect(restarted.attachedDevices().map(\.serialNumber) == ids)
        let boron = try #require(restarted.device(at: port(1)))
        let particle = try await ParticleDFUDevice.open(try #require(boron.transport))
        #expect(try await particle.readPrivateKey().der == key.der)
        #expect(try restarted.device(at: port(2))?.readMemory(alt: 0, address: 0x0802_0000, length: 5000) == pattern(5000))
    }
}

final class ChangeLog: @unchecked Sendable {
    private let lock = NSLock()
    private var changes: [SimulatedFleet.Change] = []
    var record: @Sendable (SimulatedFleet.Change) -> Void { { [self] c in lock.withLock { changes.append(c) } } }
    var count: Int { lock.withLock { changes.count } }
}

@Suite struct NormalModeRequestTests {
    @Test(arguments: [Platform.p1, .argon])
    func resetRequestReenumeratesInNormalMode(platform: Platform) async throws {
        let fleet = try SimulatedFleet(timeScale: 0.001, seed: 4)
        let device = try fleet.add(platform, at: port(6), mode: .normal)
        let first = try #require(fleet.attachedDevices().first)
        let requests = ParticleControlRequests(transport: first.transport)
        #expect(try await requests.send(.systemVersion, step: .readDeviceID) == [0x0A, 5] + Array("6.2.0".utf8))
        let changes = fleet.changes()
        _ = try await first.transport.control(ControlSetup(requestType: 0x40, request: 0x50, value: 0, index: 40, length: 0),
                                              data: [], timeout: .seconds(1))
        var iterator = changes.makeAsyncIterator()
        guard case .detached = await iterator.next(), case .attached(let again) = await iterator.next() else {
            Issue.record("the device did not re-enumerate")
            return
        }
        #expect(again.mode == .normal && again.serialNumber == device.deviceID)
        #expect(try await ParticleControlRequests(transport: again.transport).deviceID() == device.deviceID)
    }

    @Test func unsupportedServiceRequestReportsDeviceOSError() async throws {
        let device = try SimulatedDevice(platform: .boron, mode: .normal, timeScale: 0, seed: 1)
        let requests = ParticleControlRequests(transport: try #require(device.transport))
        // Request 20 through the service framing answers protobuf GetDeviceIdReply.
        #expect(try await requests.send(.deviceID, step: .readDeviceID) == [0x0A, 24] + Array(device.deviceID.utf8))
        let setup = ControlSetup(requestType: 0xC0, request: 1, value: 0, index: 211, length: 64)  // GET_SECURITY_KEY
        let reply = try await device.transport!.control(setup, data: [], timeout: .seconds(1))
        let id = UInt16(reply[6]) | UInt16(reply[7]) << 8
        let check = try await device.transport!.control(ControlSetup(requestType: 0xC0, request: 2, value: 0, index: id, length: 64),
                                                        data: [], timeout: .seconds(1))
        // flags STATUS|SIZE|RESULT, status OK, size 0, result -120 (SYSTEM_ERROR_NOT_SUPPORTED): Gen3 has no key requests.
        #expect(Array(check.suffix(4)) == [0x88, 0xFF, 0xFF, 0xFF])
    }
}

@Suite struct AutosaveTests {
    @Test func keysWrittenBeforeLeavingSurviveAKilledSimulator() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-autosave-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let key = try DevicePrivateKey.generate(.ec)
        let deviceID: String
        do {
            let fleet = try SimulatedFleet(timeScale: 0.001, directory: folder, seed: 3, autosave: true)
            let device = try fleet.add(.argon, at: port(1))
            deviceID = device.deviceID
            let particle = try await ParticleDFUDevice.open(try #require(device.transport))
            try await particle.writePrivateKey(key, replacing: .blank)
            try await particle.leave()
            _ = try await fleet.waitForDevice(
                USBDeviceMatch(serialNumber: deviceID, vendorID: 0x2B04, productIDs: [Platform.argon.normalProductID]), timeout: .seconds(10))
            #expect(await fleet.waitForPendingSaves() == nil)
            // No explicit save(): the process "dies" here.
        }
        let restarted = try SimulatedFleet(timeScale: 0, directory: folder)
        let device = try #require(restarted.device(at: port(1)))
        #expect(device.deviceID == deviceID)
        #expect(device.currentMode == .normal)
        #expect(try DevicePrivateKey(slot: device.privateKeySlot()).der == key.der)
    }
}
