import Age
import DeviceBus
import ParticlePlatform
import DeviceKeys
import Escrow
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// `keyline keys doctor` and `keyline keys send` against the registry, on provisioned simulated
/// devices through the stand-in: the records they leave, the refusals, and (with restore) that no
/// private key byte is left anywhere.
@Suite("keyline keys doctor and send", .serialized)
struct KeysBenchTests {
    static func port(_ hub: UInt8, _ index: Int) -> USBPortPath { USBPortPath(bus: 1, ports: [hub, UInt8(index)]) }

    static func setSlot(_ device: SimulatedDevice, _ bytes: [UInt8]) throws {
        let slot = device.platform.privateKeySlot
        try device.writeMemory(alt: 1, address: UInt32(slot.offset), bytes: bytes + [UInt8](repeating: 0xFF, count: slot.size - bytes.count))
    }

    static func waitForNormalMode(_ device: SimulatedDevice) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while device.currentMode != .normal || !device.isAttached {
            guard ContinuousClock.now < deadline else { throw CLITestFailure("device \(device.deviceID) did not come back") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test("doctor: new key escrowed, loaded, read back and registered as the line records it; restore then brings it back; no key bytes left anywhere",
          arguments: [Platform.photon, Platform.boron])
    func doctor(platform: Platform) async throws {
        let line = try await ProvisionLine(seed: 71) { fleet in
            try fleet.add(platform, at: Self.port(1, 1), mode: platform == .photon ? .dfu : .normal)
        }
        defer { Task { await line.stop() } }
        try await waitUntil(poll: .milliseconds(10), "!line.fleet.attachedDevices().isEmpty") { !line.fleet.attachedDevices().isEmpty }
        let provisioned = try await line.keyline(["provision", ProvisionLine.pipeline("\(platform.name)-factory.yaml"), "--json"])
        #expect(provisioned.status == 0, "\(provisioned.stderr)\n\(provisioned.stdout.suffix(2000))")
        let product = try #require(ProvisionLine.summary(provisioned)?["product"] as? String)
        let device = line.fleet.allDevices[0].device
        let id = device.deviceID
        try await Self.waitForNormalMode(device)
        let original = try DevicePrivateKey(slot: device.privateKeySlot())
        let registry = try await line.registry()
        let first = try #require(try await registry.activeRegistration(productID: product, deviceID: id))
        let eventsBefore = try await registry.events(deviceID: id).count
        let scratch = line.scratch.url
        func keyline(_ arguments: [String]) async throws -> ChildProcess.Result {
            try await ChildProcess.run(Subprocess.keyline, arguments, in: scratch, environment: line.environment, timeout: .seconds(300))
        }

        // The only device attached, its product taken from its active key.
        let doctored = try await keyline(["keys", "doctor", "--json"])
        #expect(doctored.status == 0, "\(doctored.stderr)\n\(doctored.stdout)")
        let report = try #require(ProvisionLine.events(doctored).last)
        let fingerprint = try #require(report["fingerprint"] as? String)
        #expect(fingerprint != first.fingerprint)
        #expect(report["found"] as? String == "key")
        #expect(report["previousFingerprint"] as? String == first.fingerprint)
        #expect((report["previousEscrowObjectID"] as? NSNumber)?.int64Value == first.escrowObjectID, "the line's backup is reused")
        try await Self.waitForNormalMode(device)
        let fresh = try DevicePrivateKey(slot: device.privateKeySlot())
        #expect(fresh.publicKey.fingerprint == fingerprint)

        // The line's records: the new key's escrow object and event, the old key superseded, the new one registered.
        let active = try #require(try await registry.activeRegistration(productID: product, deviceID: id))
        #expect(active.fingerprint == fingerprint && active.jobID == nil)
        #expect(try await registry.registration(fingerprint: first.fingerprint)?.status == .superseded)
        let kinds = try await registry.events(deviceID: id).dropFirst(eventsBefore).map(\.kind)
        #expect(kinds == ["key.escrowed", "key.superseded", "key.registered"])
        try await line.checkInvariants(product: product, devices: [device])
        let alg = platform.keyAlgorithm.rawValue
        let written = scratch.appendingPathComponent("\(id)_\(alg)_new.pub.pem")
        #expect(try String(contentsOf: written, encoding: .utf8) == fresh.publicKey.pem)
        for suffix in [".pem", ".der"] {
            #expect(!FileManager.default.fileExists(atPath: scratch.appendingPathComponent("\(id)_\(alg)_new\(suffix)").path))
        }
        // Run again, the public key file is not replaced without --force.
        #expect(try await keyline(["keys", "doctor", id]).status == 73)

        // Another valid key in the slot (not escrowed anywhere): doctor escrows it before replacing it.
        let stray = try DevicePrivateKey.generate(platform.keyAlgorithm)
        try Self.setSlot(device, stray.der)
        let again = try await keyline(["keys", "doctor", id, "--product", product, "--force", "--json"])
        #expect(again.status == 0, "\(again.stderr)\n\(again.stdout)")
        let second = try #require(ProvisionLine.events(again).last)
        #expect(second["previousFingerprint"] as? String == stray.publicKey.fingerprint)
        let objects = try await registry.escrowObjects(deviceID: id)
        let strayObject = try #require(objects.first { $0.publicKeySHA256 == stray.publicKey.fingerprint })
        #expect((second["previousEscrowObjectID"] as? NSNumber)?.int64Value == strayObject.id)
        let identities = try X25519Identity.parseFile(String(contentsOf: line.identity, encoding: .utf8))
        let ciphertext = try await DirectoryEscrowStore(root: line.store).get(
            EscrowObjectKey(product: product, deviceID: id, publicKeySHA256: strayObject.publicKeySHA256),
            expectedSHA256: strayObject.ciphertextSHA256)
        #expect(try EscrowBackup.decrypt(ciphertext, identities: identities).privateKey.der == stray.der)
        try await Self.waitForNormalMode(device)
        let third = try DevicePrivateKey(slot: device.privateKeySlot())
        try await line.checkInvariants(product: product, devices: [device])

        // The doctor's key is restorable like the line's.
        device.corruptKeySlot(seed: 5)
        let restored = try await line.keyline(["restore", id, "--identity", line.identity.path, "--reason", "after doctor", "--json"])
        #expect(restored.status == 0, "\(restored.stderr)\n\(restored.stdout)")
        try await Self.waitForNormalMode(device)
        #expect(try DevicePrivateKey(slot: device.privateKeySlot()).der == third.der)
        try await line.checkInvariants(product: product, devices: [device])

        // Nothing that provision, doctor and restore produced holds any of the four keys.
        try await line.expectNoKeyMaterial(in: [provisioned, doctored, again, restored], extraKeys: [original, fresh, stray])
    }

    @Test("send: only a backed-up key, an active key replaced only with --supersede, never another device's key")
    func send() async throws {
        let line = try await ProvisionLine(seed: 72) { fleet in
            for index in 1...2 { try fleet.add(.photon, at: Self.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        try await waitUntil(poll: .milliseconds(10), "line.fleet.attachedDevices().count >= 2") { line.fleet.attachedDevices().count >= 2 }
        let provisioned = try await line.keyline(["provision", ProvisionLine.pipeline("photon-factory.yaml"), "--json"])
        #expect(provisioned.status == 0, "\(provisioned.stderr)")
        let product = try #require(ProvisionLine.summary(provisioned)?["product"] as? String)
        let devices = line.fleet.allDevices.map(\.device)
        let (id, otherID) = (devices[0].deviceID, devices[1].deviceID)
        let registry = try await line.registry()
        let before = try #require(try await registry.activeRegistration(productID: product, deviceID: id))
        let otherBefore = try #require(try await registry.activeRegistration(productID: product, deviceID: otherID))
        let scratch = line.scratch.url
        func keyline(_ arguments: [String]) async throws -> ChildProcess.Result {
            try await ChildProcess.run(Subprocess.keyline, arguments, in: scratch, environment: line.environment, timeout: .seconds(120))
        }
        func refused(_ arguments: [String], _ code: Int32, _ kind: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let result = try await keyline(arguments + ["--json"])
            #expect(result.status == code, "\(result.stderr)\n\(result.stdout)", sourceLocation: sourceLocation)
            let error = ProvisionLine.events(result).last?["error"] as? [String: Any]
            #expect(error?["kind"] as? String == kind, "\(result.stdout)", sourceLocation: sourceLocation)
        }
        try await keyline(["keys", "new", "--platform", "photon", "fresh"]).requireSuccess()
        try await keyline(["keys", "new", "--platform", "boron", "elliptic"]).requireSuccess()

        // A public key with no backup recorded: refused.
        try await refused(["keys", "send", id, "fresh.pub.pem", "--product", product], 65, "noBackup")
        // An EC key for a Photon (TCP, RSA): refused before anything is escrowed (particle-cli #582).
        try await refused(["keys", "send", id, "elliptic.der", "--product", product], 65, "wrongAlgorithm")
        // The private key: escrowed, but the device's active key stays without --supersede.
        try await refused(["keys", "send", id, "fresh.der", "--product", product], 65, "activeKeyConflict")
        #expect(try await registry.activeRegistration(productID: product, deviceID: id)?.id == before.id)
        // Several devices attached and none named.
        try await refused(["keys", "send", "--product", product], 64, "severalDevices")

        // --supersede: the public key now has its backup; the old key is superseded, recorded.
        let sent = try await keyline(["keys", "send", id, "fresh.pub.pem", "--product_id", product, "--supersede",
                                      "--reason", "RMA-77 new key", "--json"])
        #expect(sent.status == 0, "\(sent.stderr)\n\(sent.stdout)")
        let fresh = try KeyFile.parse(Array(try Data(contentsOf: scratch.appendingPathComponent("fresh.der")))).publicKey
        let active = try #require(try await registry.activeRegistration(productID: product, deviceID: id))
        #expect(active.fingerprint == fresh.fingerprint && active.id != before.id)
        let events = try await registry.events(deviceID: id)
        let superseded = try #require(events.last { $0.kind == "key.superseded" })
        #expect(superseded.detail["fingerprint"] == before.fingerprint && superseded.detail["reason"] == "RMA-77 new key")
        #expect(events.last?.kind == "key.registered")
        let object = try #require(try await registry.escrowObject(id: active.escrowObjectID))
        let identities = try X25519Identity.parseFile(String(contentsOf: line.identity, encoding: .utf8))
        let ciphertext = try await DirectoryEscrowStore(root: line.store).get(
            EscrowObjectKey(product: product, deviceID: id, publicKeySHA256: object.publicKeySHA256), expectedSHA256: object.ciphertextSHA256)
        #expect(try EscrowBackup.decrypt(ciphertext, identities: identities).privateKey.publicKey == fresh)

        // Sending the same key again is a replay; to the other device it is refused, even with --supersede.
        #expect(try await keyline(["keys", "send", id, "fresh.pub.pem", "--product", product]).status == 0)
        try await refused(["keys", "send", otherID, "fresh.der", "--product", product, "--supersede"], 65, "fingerprintConflict")
        #expect(try await registry.activeRegistration(productID: product, deviceID: otherID)?.id == otherBefore.id)

        // doctor on a device the line never saw (blank slot, no registration): the product must be named.
        let stranger = try line.fleet.add(.photon, at: Self.port(2, 1), mode: .dfu)
        try await waitUntil(poll: .milliseconds(10), "stranger.isAttached") { stranger.isAttached }
        try await refused(["keys", "doctor", stranger.deviceID], 64, "productNeeded")
        let doctored = try await keyline(["keys", "doctor", stranger.deviceID, "--product", product, "--json"])
        #expect(doctored.status == 0, "\(doctored.stderr)\n\(doctored.stdout)")
        let report = try #require(ProvisionLine.events(doctored).last)
        #expect(report["found"] as? String == "blank" && report["supersededRegistrationID"] == nil)
        try await KeysBenchTests.waitForNormalMode(stranger)
        try await line.checkInvariants(product: product, devices: [devices[1], stranger])
    }
}
