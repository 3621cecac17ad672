import Age
import Custody
import DeviceKeys
import Escrow
import Foundation
import Registry
import Testing
import TestSupport

/// `custody rotate` in process: a new epoch, every backup re-encrypted as generation 2 beside
/// the untouched generation 1, registrations pointing at it, the old epoch retired.
@Suite("Escrow rotation", .serialized)
struct RotationTests {
    @Test("rotate 20 backups: dry run writes nothing; then generation 2 under the new epoch, old objects untouched")
    func rotate() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "custody-rotate")
            defer { scratch.remove() }
            let old = try await CustodyFixture(registry, scratch: scratch)
            let offsite = X25519Identity.generate()
            let store = DirectoryEscrowStore(root: scratch.file("store"))
            let backed = try await BackedUpKeys(registry, store: store, product: "rot", count: 20,
                                                recipients: [try X25519Recipient(old.created.epoch.recipient), offsite.recipient])
            let rotation = EscrowRotation(registry: registry, station: "officer-bench")
            let before = try await registry.registrations(productID: "rot")

            let planned = try await rotation.plan(from: old.created.epoch, productID: "rot")
            #expect(planned.count == 20)
            #expect(planned.allSatisfy { $0.newObjectKey.hasSuffix(".g2.age") })
            #expect(try await registry.unfinishedRotations().isEmpty)

            let recovered = try await ShareRecovery(registry: registry, identities: old.allIdentities)
                .recover(Array(old.created.shareFiles[0...2]))
            let newCustodians = (0..<3).map { _ in X25519Identity.generate() }
            let (created, ceremony) = try await rotation.start(
                from: recovered, newEpochName: "epoch-2", threshold: 2,
                custodians: zip(["xavier", "yolanda", "zoe"], newCustodians).map { Custodian(name: $0, recipient: $1.recipient) },
                folder: scratch.path("epoch-2"), productID: "rot")
            let summary = try await rotation.run(ceremony, old: recovered)
            #expect(summary.rotated == 20 && summary.adopted == 0 && summary.failures.isEmpty)
            #expect(summary.oldEpochRetired)
            #expect(try await registry.epoch(named: "epoch-1")?.status == .retired)

            let newIdentity = try await ShareRecovery(registry: registry, identities: newCustodians)
                .recover(Array(created.shareFiles[1...2])).identity
            for entry in before {
                let registration = entry.registration
                let (object, generation) = try #require(try await registry.currentEscrowObject(registrationID: registration.id))
                #expect(generation == 2)
                #expect(object.objectKey.hasSuffix(".g2.age"))
                #expect(object.recipients == [created.epoch.recipient, offsite.recipient.description])
                let bytes = try await store.get(try #require(EscrowObjectKey(path: object.objectKey)), expectedSHA256: object.ciphertextSHA256)
                let backup = try EscrowBackup.decrypt(bytes, identities: [newIdentity])
                #expect(backup.privateKey.der == backed.keys[registration.deviceID]?.der)
                #expect(try EscrowBackup.decrypt(bytes, identities: [offsite]).deviceID == registration.deviceID)
                #expect(throws: (any Error).self) { try EscrowBackup.decrypt(bytes, identities: [recovered.identity]) }
                // Generation 1 is still there, unchanged.
                let first = try #require(try await registry.escrowObject(id: registration.escrowObjectID))
                _ = try await store.get(try #require(EscrowObjectKey(path: first.objectKey)), expectedSHA256: first.ciphertextSHA256)
            }
            let rotatedEvents = try await registry.events().filter { $0.kind == "escrow.rotated" }
            #expect(rotatedEvents.count == 20)
            #expect(Set(rotatedEvents.compactMap(\.deviceID)) == Set(backed.keys.keys))
            // Nothing left to do: a second run moves nothing.
            #expect(try await rotation.plan(from: old.created.epoch, productID: "rot").isEmpty)
        }
    }
}
