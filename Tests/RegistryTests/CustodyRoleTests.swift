import Foundation
import Testing
@testable import Registry

/// Who may run and read custody ceremonies (schema 0012), with real logins: an RMA/officer login
/// bound to its bench runs them; a station reads only the epochs; an auditor reads every record.
@Suite("Custody roles")
struct CustodyRoleTests {
    static let recipient = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"

    static func epoch(_ name: String) -> NewEscrowEpoch {
        NewEscrowEpoch(name: name, recipient: recipient, threshold: 2, shares: (1...3).map { x in
            NewCustodyShare(x: x, custodian: "custodian\(x)", custodianRecipient: recipient,
                            fileSHA256: String(repeating: String(x), count: 64),
                            shareSHA256: String(repeating: String(x + 3), count: 64))
        })
    }

    @Test("an RMA login bound to its bench records epochs; a station cannot, and reads no shares; an auditor reads all")
    func grants() async throws {
        try await withTestDatabase { database in
            let (rmaUser, rma) = try await database.login(memberOf: "keyline_rma", station: "officer-bench")
            let (epoch, ceremony) = try await rma.createEpoch(Self.epoch("e1"), station: "officer-bench")
            #expect(ceremony.operator == rmaUser && ceremony.kind == .create && ceremony.epochID == epoch.id)
            #expect(epoch.createdBy == rmaUser)
            // Another bench's name is refused by the database.
            await expectServerError("42501") {
                _ = try await rma.recordRecovery(epochID: epoch.id, shareIDs: [], station: "other-bench")
            }

            let (_, station) = try await database.login(memberOf: "keyline_station")
            #expect(try await station.epochs().map(\.name) == ["e1"])
            await expectServerError("42501") { _ = try await station.activeShares(epochID: epoch.id) }
            await expectServerError("42501") { _ = try await station.createEpoch(Self.epoch("e2"), station: RegistryFixture.station) }

            let (_, auditor) = try await database.login(memberOf: "keyline_auditor")
            let (set, shares) = try #require(try await auditor.activeShares(epochID: epoch.id))
            #expect(set.threshold == 2 && shares.map(\.x) == [1, 2, 3])
            await expectServerError("42501") { _ = try await auditor.recordShareLost(shareID: shares[0].id, reason: "x", station: "a") }

            // Records are append-only: no role, the owner included, rewrites a share or deletes an epoch.
            let admin = try await database.registry()
            let connection = admin.client
            await expectServerError("23000") {
                _ = try await connection.transaction(isolation: .readCommitted) { transaction in
                    try transaction.execute("UPDATE custody_shares SET custodian = 'mallory'")
                }
            }
            await expectServerError("23000") {
                _ = try await connection.transaction(isolation: .readCommitted) { transaction in
                    try transaction.execute("DELETE FROM escrow_epochs")
                }
            }
        }
    }

    @Test("the bound RMA login records a rotated backup under a running rotation; no other ceremony may move a key's object")
    func rotationGenerations() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let (device, registration) = try await TrustRoleTests.registered(admin, fixture)
            let (_, rma) = try await database.login(memberOf: "keyline_rma", station: "officer-bench")
            let (epoch, created) = try await rma.createEpoch(Self.epoch("e1"), station: "officer-bench")
            let next = NewEscrowEpoch(name: "e2", recipient: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
                                      threshold: 2, shares: (1...3).map { x in
                NewCustodyShare(x: x, custodian: "custodian\(x)", custodianRecipient: Self.recipient,
                                fileSHA256: String(repeating: ["a", "b", "c"][x - 1], count: 64),
                                shareSHA256: String(repeating: ["d", "e", "f"][x - 1], count: 64))
            })
            let (newEpoch, rotation) = try await rma.startRotation(from: epoch.id, to: next, productID: nil, shareIDs: [],
                                                                   station: "officer-bench")
            let objectKey = "\(fixture.productID)/\(device)/\(registration.fingerprint).g2.age"
            let object = NewEscrowObject(productID: fixture.productID, deviceID: device, publicKeySHA256: registration.fingerprint,
                                         storeURI: "file:///var/lib/keyline/escrow", objectKey: objectKey,
                                         ciphertextSHA256: String(repeating: "cd", count: 32), sizeBytes: 99,
                                         recipients: [next.recipient], jobID: nil, station: "officer-bench")
            func commit() async throws {
                _ = try await rma.commitRotation(ceremonyID: rotation.id, registrationID: registration.id, generation: 2,
                                                 epochID: newEpoch.id, object: object, previousObjectID: registration.escrowObjectID)
            }
            // No write-ahead record: the object is not the commit of any intent.
            await expectServerError("42501") { try await commit() }
            try await rma.recordRotationIntent(ceremonyID: rotation.id, registrationID: registration.id, RotationIntent(
                generation: 2, storeURI: object.storeURI, objectKey: objectKey, ciphertextSHA256: object.ciphertextSHA256,
                sizeBytes: object.sizeBytes))
            try await commit()
            #expect(try await admin.currentEscrowObject(registrationID: registration.id)?.generation == 2)

            // Pointing the key back at its first backup (under the old epoch) through another ceremony is refused.
            await expectServerError("42501") {
                _ = try await rma.connection.execute("""
                    INSERT INTO escrow_object_generations (registration_id, generation, escrow_object_id, epoch_id, ceremony_id)
                    VALUES ($1, 3, $2, $3, $4)
                    """, [registration.id, registration.escrowObjectID, epoch.id, created.id])
            }
        }
    }
}
