import Age
import DeviceBus
import DeviceKeys
import Escrow
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// `keyline restore` end to end: provision through the stand-in, damage the simulated devices'
/// keys, restore from escrow with the RMA identity, check the DCT byte for byte and the records.
@Suite("keyline restore", .serialized)
struct RestoreTests {
    static func port(_ hub: UInt8, _ index: Int) -> USBPortPath { USBPortPath(bus: 1, ports: [hub, UInt8(index)]) }
    static let dctSize = 16 * 1024

    static func dct(_ device: SimulatedDevice) throws -> [UInt8] {
        try device.readMemory(alt: 1, address: 0, length: dctSize)
    }

    static func setSlot(_ device: SimulatedDevice, _ bytes: [UInt8]) throws {
        let slot = device.platform.privateKeySlot
        try device.writeMemory(alt: 1, address: UInt32(slot.offset), bytes: bytes + [UInt8](repeating: 0xFF, count: slot.size - bytes.count))
    }

    /// Provisions the line's Photons (host keys) and returns the product.
    /// Rewrites an escrow object's recorded hash and size, as tampering would: escrow objects are
    /// append-only for every role (0008), so the superuser switches the triggers off for it.
    static func rewrite(_ id: Int64, sha256: String, size: Int64, in registry: RegistryDatabase) async throws {
        _ = try await registry.client.transaction(isolation: .readCommitted) { transaction in
            try transaction.execute("SET LOCAL session_replication_role = replica")
            try transaction.execute("UPDATE escrow_objects SET ciphertext_sha256 = $1, size_bytes = $2 WHERE id = $3",
                                    [sha256, size, id])
        }
    }

    static func provision(_ line: ProvisionLine, count: Int) async throws -> (String, ChildProcess.Result) {
        try await waitUntil(poll: .milliseconds(10), "line.fleet.attachedDevices().count >= count") { line.fleet.attachedDevices().count >= count }
        let result = try await line.keyline(["provision", ProvisionLine.pipeline("photon-factory.yaml"), "--json"])
        #expect(result.status == 0, "\(result.stderr)\n\(result.stdout.suffix(2000))")
        let summary = try #require(ProvisionLine.summary(result))
        return (try #require(summary["product"] as? String), result)
    }

    @Test("blank, garbage and another valid key: restored byte for byte, the other key escrowed as superseded")
    func restoresDamagedKeys() async throws {
        let line = try await ProvisionLine(seed: 31) { fleet in
            for index in 1...3 { try fleet.add(.photon, at: Self.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        let (product, provisioned) = try await Self.provision(line, count: 3)
        let devices = line.fleet.allDevices.map(\.device)
        let originals = try devices.map { try Self.dct($0) }
        let registry = try await line.registry()
        let before = try await registry.registrations(productID: product)

        try Self.setSlot(devices[0], [])                        // blank
        devices[1].corruptKeySlot(seed: 7)                      // garbage
        let other = try DevicePrivateKey.generate(.rsa)         // another valid key
        try Self.setSlot(devices[2], other.der)

        var results = [provisioned]
        for (index, device) in devices.enumerated() {
            let result = try await line.keyline(["restore", device.deviceID, "--identity", line.identity.path,
                                                 "--reason", "returned \(index)", "--ticket", "RMA-\(index)", "--json"])
            #expect(result.status == 0, "\(result.stderr)\n\(result.stdout)")
            results.append(result)
            let report = try #require(ProvisionLine.events(result).last)
            #expect(report["foundKey"] as? String == ["blank", "corrupt", "other"][index])
        }
        for (device, original) in zip(devices, originals) {
            let slot = device.platform.privateKeySlot
            #expect(Array(try Self.dct(device)[slot.offset..<slot.offset + slot.size]) == Array(original[slot.offset..<slot.offset + slot.size]))
        }
        // Same single active registration per device, nothing registered anew.
        let after = try await registry.registrations(productID: product)
        #expect(after.map(\.registration.id) == before.map(\.registration.id))
        #expect(after.allSatisfy { $0.registration.status == .active })
        try await line.checkInvariants(product: product, devices: devices)

        // The other key: escrowed (no registration), and decrypts to exactly that key.
        let objects = try await registry.escrowObjects(deviceID: devices[2].deviceID)
        let superseded = try #require(objects.first { $0.publicKeySHA256 == other.publicKey.fingerprint })
        let identities = try X25519Identity.parseFile(String(contentsOf: line.identity, encoding: .utf8))
        let ciphertext = try await DirectoryEscrowStore(root: line.store).get(
            EscrowObjectKey(product: product, deviceID: devices[2].deviceID, publicKeySHA256: superseded.publicKeySHA256),
            expectedSHA256: superseded.ciphertextSHA256)
        #expect(try EscrowBackup.decrypt(ciphertext, identities: identities).privateKey.der == other.der)

        // A restoration row and an event for each, with reason, ticket and what was found.
        let restorations = try await registry.restorations(productID: product)
        #expect(restorations.count == 3)
        #expect(restorations.allSatisfy { $0.outcome == .restored && $0.durationMilliseconds != nil })
        #expect(Set(restorations.compactMap(\.ticket)) == ["RMA-0", "RMA-1", "RMA-2"])
        #expect(restorations.first { $0.deviceID == devices[2].deviceID }?.supersededEscrowObjectID == superseded.id)
        for device in devices {
            let events = try await registry.events(deviceID: device.deviceID)
            #expect(events.contains { $0.kind == "key.restored" && !$0.actor.isEmpty })
        }
        #expect(devices.allSatisfy { $0.currentMode == .normal })
        try await line.expectNoKeyMaterial(in: results, extraKeys: [other])
    }

    @Test("every refusal has its exit code and leaves the DCT unchanged")
    func refusals() async throws {
        let line = try await ProvisionLine(seed: 32) { fleet in
            for index in 1...2 { try fleet.add(.photon, at: Self.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        let (product, _) = try await Self.provision(line, count: 2)
        let device = try #require(line.fleet.device(at: Self.port(1, 1)))
        device.corruptKeySlot(seed: 9)
        let registry = try await line.registry()
        let active = try #require(try await registry.activeRegistration(productID: product, deviceID: device.deviceID))
        let object = try #require(try await registry.escrowObject(id: active.escrowObjectID))
        let file = line.store.appendingPathComponent(object.objectKey)

        func refused(_ id: String, _ code: Int32, _ kind: String, identity: URL? = nil, extra: [String] = [],
                     _ watched: SimulatedDevice? = nil, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let target = watched ?? device
            let dct = try Self.dct(target)
            let result = try await line.keyline(["restore", id, "--identity", (identity ?? line.identity).path, "--json"] + extra)
            #expect(result.status == code, "\(result.stderr)\n\(result.stdout)", sourceLocation: sourceLocation)
            let error = ProvisionLine.events(result).last?["error"] as? [String: Any]
            #expect(error?["kind"] as? String == kind, "\(result.stdout)", sourceLocation: sourceLocation)
            #expect(try Self.dct(target) == dct, "the DCT changed", sourceLocation: sourceLocation)
        }

        // 10: no registration (a device attached but never provisioned).
        let stranger = try line.fleet.add(.photon, at: Self.port(2, 1), mode: .dfu)
        try await refused(stranger.deviceID, 10, "noRegistration", stranger)

        // 11: backup missing, then present with other bytes.
        let saved = try Data(contentsOf: file)
        try FileManager.default.removeItem(at: file)
        try await refused(device.deviceID, 11, "backupUnavailable")
        try Data(saved.reversed()).write(to: file)
        try await refused(device.deviceID, 11, "backupUnavailable")
        try saved.write(to: file)

        // 12: an identity the line never escrowed to.
        let wrong = line.scratch.url.appendingPathComponent("wrong-identity.txt")
        try await line.keyline(["escrow", "keygen", "-o", wrong.path]).requireSuccess()
        try await refused(device.deviceID, 12, "cannotDecrypt", identity: wrong)

        // 13: a backup (re-encrypted, hash recorded) that names another device.
        let identities = try X25519Identity.parseFile(String(contentsOf: line.identity, encoding: .utf8))
        let genuine = try EscrowBackup.decrypt(Array(saved), identities: identities)
        let forged = try EscrowBackup(deviceID: stranger.deviceID, platform: genuine.platform, product: genuine.product,
                                      privateKey: genuine.privateKey, job: genuine.job, station: genuine.station)
        let recipients = try X25519Recipient.parseFile(String(contentsOfFile: line.environment["KEYLINE_RECIPIENTS"]!, encoding: .utf8))
        let sealed = try forged.seal(to: recipients)
        try Data(sealed.ciphertext).write(to: file)
        try await Self.rewrite(object.id, sha256: sealed.sha256, size: Int64(sealed.ciphertext.count), in: registry)
        try await refused(device.deviceID, 13, "backupMismatch")
        try saved.write(to: file)
        try await Self.rewrite(object.id, sha256: object.ciphertextSHA256, size: object.sizeBytes, in: registry)

        // 16: not attached.
        device.unplug()
        try await refused(device.deviceID, 16, "deviceNotAttached", extra: ["--timeout", "1"])

        // 14: the same device ID shows up as another platform (a P1 on the bench).
        let impostor = try line.fleet.add(.p1, at: Self.port(3, 1), mode: .dfu, deviceID: device.deviceID)
        try await refused(device.deviceID, 14, "platformMismatch", impostor)
        try line.fleet.remove(at: Self.port(3, 1))

        // Every refusal was recorded as a failed restoration where a registration exists.
        let restorations = try await registry.restorations(productID: product, deviceID: device.deviceID)
        #expect(restorations.count >= 5 && restorations.allSatisfy { $0.outcome == .failed })

        // And with everything back in place the restore works.
        device.plugIn(mode: .dfu)
        let restored = try await line.keyline(["restore", device.deviceID, "--identity", line.identity.path, "--json"])
        #expect(restored.status == 0, "\(restored.stderr)\n\(restored.stdout)")
        try await line.checkInvariants(product: product, devices: line.fleet.allDevices.map(\.device).filter { $0 !== stranger })
    }

    @Test("a protected device is refused with 15 and its DCT is unchanged")
    func protectedDevice() async throws {
        let line = try await ProvisionLine(seed: 33) { fleet in
            try fleet.add(.boron, at: Self.port(1, 1), mode: .normal)
        }
        defer { Task { await line.stop() } }
        try await waitUntil(poll: .milliseconds(10), "!line.fleet.attachedDevices().isEmpty") { !line.fleet.attachedDevices().isEmpty }
        let provisioned = try await line.keyline(["provision", ProvisionLine.pipeline("boron-factory.yaml"), "--json"])
        #expect(provisioned.status == 0, "\(provisioned.stderr)")
        let device = line.fleet.allDevices[0].device
        let dct = try Self.dct(device)
        device.setProtected(true)
        let result = try await line.keyline(["restore", device.deviceID, "--identity", line.identity.path, "--json"])
        #expect(result.status == 15, "\(result.stderr)\n\(result.stdout)")
        #expect(try Self.dct(device) == dct)
    }

    @Test("a tray of 16 returns restored in parallel from a CSV")
    func tray() async throws {
        let line = try await ProvisionLine(seed: 34) { fleet in
            for index in 1...16 { try fleet.add(.photon, at: Self.port(UInt8(1 + (index - 1) / 8), (index - 1) % 8 + 1), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        let (product, _) = try await Self.provision(line, count: 16)
        let devices = line.fleet.allDevices.map(\.device)
        let originals = devices.map { $0.privateKeySlot() }
        var csv = "device_id,reason,ticket\n"
        for (index, device) in devices.enumerated() {
            if index % 2 == 0 { try Self.setSlot(device, []) } else { device.corruptKeySlot(seed: UInt64(index)) }
            csv += "\(device.deviceID),flash corruption,T-\(index)\n"
        }
        let batch = line.scratch.url.appendingPathComponent("tray.csv")
        try csv.write(to: batch, atomically: true, encoding: .utf8)
        let result = try await line.keyline(["restore", "--batch", batch.path, "--identity", line.identity.path,
                                             "--concurrency", "8", "--json"])
        #expect(result.status == 0, "\(result.stderr)\n\(result.stdout.suffix(2000))")
        #expect(devices.map { $0.privateKeySlot() } == originals)
        let restorations = try await line.registry().restorations(productID: product)
        #expect(restorations.filter { $0.outcome == .restored }.count == 16)
        try await line.checkInvariants(product: product, devices: devices)
    }
}
