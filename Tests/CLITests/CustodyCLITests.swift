import Age
import Custody
import DeviceBus
import DeviceKeys
import Escrow
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// `keyline custody` and `keyline restore --shares` end to end: a 3-of-5 epoch, a line that
/// escrows to its recipient, restores through the libusb stand-in with shares, and a rotation
/// killed with SIGKILL at random points and resumed.
@Suite("keyline custody", .serialized)
struct CustodyCLITests {
    static let names = ["alice", "bob", "carol", "dave", "erin"]

    /// Custodian identity files in `folder`, and their `--custodian NAME=age1…` arguments.
    static func custodians(_ names: [String], in scratch: ScratchDirectory, tag: String) throws -> (files: [String], arguments: [String]) {
        var files: [String] = [], arguments: [String] = []
        for name in names {
            let identity = X25519Identity.generate()
            try scratch.write("\(tag)-\(name).txt", Array(identity.identityFile().utf8))
            files.append(scratch.path("\(tag)-\(name).txt"))
            arguments += ["--custodian", "\(name)=\(identity.recipient)"]
        }
        return (files, arguments)
    }

    static func shareFiles(_ result: ChildProcess.Result) throws -> [String] {
        try #require(try result.json()["shareFiles"] as? [String])
    }

    @Test("restore --shares through the stand-in: any 3 restore, 2 do not, a tampered share is named; reshare, then restore with the new set")
    func restoreWithShares() async throws {
        let line = try await ProvisionLine(seed: 41) { fleet in
            for index in 1...2 { try fleet.add(.photon, at: RestoreTests.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        let scratch = line.scratch
        let (identityFiles, custodianArguments) = try Self.custodians(Self.names, in: scratch, tag: "c")
        let created = try await line.keyline(["custody", "create", "epoch-1", "--threshold", "3", "--out", scratch.path("shares"),
                                              "--json"] + custodianArguments).requireSuccess()
        let shares = try Self.shareFiles(created)
        #expect(shares.count == 5)
        // Stations encrypt to the epoch's recipient.
        let recipient = try await line.keyline(["custody", "recipient"]).requireSuccess()
        try recipient.stdout.write(toFile: line.environment["KEYLINE_RECIPIENTS"]!, atomically: true, encoding: .utf8)
        let (product, _) = try await RestoreTests.provision(line, count: 2)
        let devices = line.fleet.allDevices.map(\.device)
        for device in devices { device.corruptKeySlot(seed: 5) }
        let damaged = try devices.map { try RestoreTests.dct($0) }

        func restore(_ device: SimulatedDevice, _ files: [String], identities: [String]) async throws -> ChildProcess.Result {
            try await line.keyline(["restore", device.deviceID, "--shares"] + files
                                   + identities.flatMap { ["--custodian-identity", $0] } + ["--json"])
        }
        // Two shares: refused before the device is touched.
        let two = try await restore(devices[0], [shares[0], shares[3]], identities: identityFiles)
        #expect(two.status == 64, "\(two.stdout)\(two.stderr)")
        #expect(two.stdout.contains("tooFewShares"))
        // A tampered share: named, refused.
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: shares[2])))
        bytes[bytes.count - 1] ^= 0x80
        try scratch.write("tampered.age", bytes)
        let tampered = try await restore(devices[0], [shares[0], shares[1], scratch.path("tampered.age")], identities: identityFiles)
        #expect(tampered.status == 65, "\(tampered.stdout)\(tampered.stderr)")
        #expect(tampered.stdout.contains(scratch.path("tampered.age")))
        #expect(try RestoreTests.dct(devices[0]) == damaged[0])

        // Three shares (carol, dave, erin): restored, and recorded as a recovery ceremony.
        let restored = try await restore(devices[0], Array(shares[2...4]), identities: identityFiles)
        #expect(restored.status == 0, "\(restored.stdout)\(restored.stderr)")
        let registry = try await line.registry()
        let restorations = try await registry.restorations(productID: product, deviceID: devices[0].deviceID)
        #expect(restorations.map(\.outcome) == [.restored])
        let recovery = try #require(try await registry.events().last { $0.kind == "custody.recovered" })
        let ceremonyID = try #require(recovery.detail["ceremony_id"].flatMap { Int64($0) })
        #expect(try await registry.restorationIDs(underCeremony: ceremonyID) == restorations.map(\.id))
        #expect(try await registry.ceremonyShareIDs(ceremonyID).count == 3)

        // Reshare (bob, dave, erin's shares) to a new 2-of-3 set; the new shares restore the other device.
        let (newFiles, newArguments) = try Self.custodians(["frank", "grace", "heidi"], in: scratch, tag: "n")
        let reshared = try await line.keyline(["custody", "reshare", "--shares", shares[1], shares[3], shares[4]]
                                              + identityFiles.flatMap { ["--custodian-identity", $0] }
                                              + ["--threshold", "2", "--out", scratch.path("new-shares"), "--json"] + newArguments)
            .requireSuccess()
        let newShares = try Self.shareFiles(reshared)
        let old = try await restore(devices[1], Array(shares[0...2]), identities: identityFiles)
        #expect(old.status == 65 && old.stdout.contains("retiredSet"), "\(old.stdout)")
        let again = try await restore(devices[1], [newShares[0], newShares[2]], identities: newFiles)
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        try await line.checkInvariantsWithShares(product: product, devices: devices, shares: [newShares[0], newShares[1]],
                                                 identities: newFiles)

        // The audit counts reachable custodians: 2 of 3 left is the threshold (a warning), 1 is an error.
        try await line.keyline(["custody", "lost", "epoch-1", "frank", "--reason", "left"]).requireSuccess()
        let warned = try await line.keyline(["audit", "--product", product, "--format", "json"])
        #expect(warned.status == 0 && warned.stdout.contains("epoch_at_threshold"), "\(warned.stdout)\(warned.stderr)")
        try await line.keyline(["custody", "lost", "epoch-1", "grace", "--reason", "lost the key"]).requireSuccess()
        let short = try await line.keyline(["audit", "--product", product, "--format", "json"])
        #expect(short.status == 2 && short.stdout.contains("epoch_short_of_custodians"), "\(short.stdout)\(short.stderr)")
    }
}

extension ProvisionLine {
    /// Every device holds its registered key, and its backup opens with the epoch identity
    /// rebuilt from `shares`.
    func checkInvariantsWithShares(product: String, devices: [SimulatedDevice], shares: [String], identities: [String]) async throws {
        let registry = try await registry()
        let recovered = try await ShareRecovery.withIdentityFiles(identities, registry: registry).recover(shares)
        let directory = DirectoryEscrowStore(root: store)
        for device in devices {
            let registration = try #require(try await registry.activeRegistration(productID: product, deviceID: device.deviceID))
            let (object, _) = try #require(try await registry.currentEscrowObject(registrationID: registration.id))
            let bytes = try await directory.get(try #require(EscrowObjectKey(path: object.objectKey)), expectedSHA256: object.ciphertextSHA256)
            let backup = try EscrowBackup.decrypt(bytes, identities: [recovered.identity])
            let held = try DevicePrivateKey(slot: device.privateKeySlot())
            #expect(held.der == backup.privateKey.der)
            #expect(held.publicKey.fingerprint == registration.fingerprint)
        }
    }
}
