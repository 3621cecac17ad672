import Foundation
import Testing
@testable import Registry

/// Issue 21 item 8: the database, not the client, requires that an escrow object is the commit of
/// an intent naming it, and a registration names an object committed for that very key — an
/// escrowed job device of the station's job, or (RMA benches, outside jobs) a bench intent.
/// Proven with the roles' real logins.
@Suite("Registrations backed by escrow intents")
struct BackedRegistrationTests {
    @Test("a station login cannot record an escrow object or a registration outside its jobs' write-ahead escrow")
    func stationOutsideAnyJob() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let (_, station) = try await database.login(memberOf: "keyline_station")
            let stationFixture = RegistryFixture(registry: station, productID: fixture.productID, job: fixture.job)

            // An escrow object outside any job, or in the job without an intent naming it.
            let loose = try await TestKey.random(using: admin.connection)
            var outside = fixture.escrowObject(deviceID: randomDeviceID(), key: loose)
            outside.jobID = nil
            await expectServerError("42501") { _ = try await station.recordEscrowObject(outside) }
            await expectServerError("42501") {
                _ = try await station.recordEscrowObject(fixture.escrowObject(deviceID: randomDeviceID(), key: loose))
            }

            // A registration outside any job, naming an object the line escrowed properly.
            let device = randomDeviceID()
            let key = try await TestKey.random(using: admin.connection)
            let object = try await stationFixture.escrowed(deviceID: device, key: key)
            await #expect(throws: RegistryError.self) {
                _ = try await station.registerKey(fixture.registration(deviceID: device, key: key, escrowObjectID: object.id,
                                                                      jobID: .some(nil)))
            }
            // In the job, but naming another object of the same key (recorded by hand, not the committed one).
            var byHand = fixture.escrowObject(deviceID: device, key: key, jobID: nil)
            byHand.objectKey += ".by-hand"
            let stray = try await admin.recordEscrowObject(byHand)
            await expectServerError("42501") {
                try await station.connection.execute("""
                    INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, job_id, station)
                    VALUES ($1, $2, 'ec', $3, $4, $5, $6, $7)
                    """, [fixture.productID, device, PostgresValue.bytea(key.spkiDER), key.fingerprint, stray.id,
                          fixture.job.id, RegistryFixture.station])
            }
            // The workflow's own registration passes.
            let registered = try await station.registerKey(fixture.registration(deviceID: device, key: key, escrowObjectID: object.id))
            #expect(registered.escrowObjectID == object.id)
        }
    }

    @Test("an RMA login records escrow objects only from its bench intents, and registers only keys so escrowed")
    func rmaBenchIntents() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let (_, rma) = try await database.login(memberOf: "keyline_rma")
            let device = randomDeviceID()
            let key = try await TestKey.random(using: admin.connection)
            var object = fixture.escrowObject(deviceID: device, key: key, jobID: nil)
            object.jobID = nil
            object.station = "rma-bench"

            // No intent: refused. Then write-ahead: intent, object, commit (with its event).
            await expectServerError("42501") { _ = try await rma.recordEscrowObject(object) }
            let intent = try await rma.recordBenchEscrowIntent(object, reason: "found on a returned device")
            #expect(intent.committedObjectID == nil && intent.station == "rma-bench")
            #expect(try await rma.pendingBenchEscrowIntent(storeURI: object.storeURI, objectKey: object.objectKey) == intent)
            await #expect(throws: RegistryError.self) {
                _ = try await rma.commitBenchEscrow(storeURI: object.storeURI, objectKey: object.objectKey,
                                                    ciphertextSHA256: String(repeating: "cd", count: 32))
            }
            let committed = try await rma.commitBenchEscrow(storeURI: object.storeURI, objectKey: object.objectKey,
                                                            ciphertextSHA256: object.ciphertextSHA256)
            #expect(try await rma.pendingBenchEscrowIntent(storeURI: object.storeURI, objectKey: object.objectKey) == nil)
            #expect(try await admin.events(deviceID: device).map(\.kind) == ["key.escrowed"])
            // Another bench's intent is not this login's to write.
            var elsewhere = object
            elsewhere.objectKey += ".2"
            elsewhere.station = "other-bench"
            await expectServerError("42501") { _ = try await rma.recordBenchEscrowIntent(elsewhere, reason: "x") }

            // A registration naming an object no intent committed is refused; the bench's own passes.
            let other = try await TestKey.random(using: admin.connection)
            var loose = fixture.escrowObject(deviceID: device, key: other, jobID: nil)
            loose.objectKey = "\(fixture.productID)/\(device)/\(other.fingerprint).by-hand.age"
            let stray = try await admin.recordEscrowObject(loose)
            await expectServerError("42501") {
                _ = try await rma.registerKey(NewKeyRegistration(
                    productID: fixture.productID, deviceID: device, algorithm: .ec, spkiDER: other.spkiDER,
                    fingerprint: other.fingerprint, escrowObjectID: stray.id, jobID: nil, station: "rma-bench"),
                    superseding: true, reason: "x")
            }
            let (registered, _) = try await rma.registerKey(NewKeyRegistration(
                productID: fixture.productID, deviceID: device, algorithm: .ec, spkiDER: key.spkiDER,
                fingerprint: key.fingerprint, escrowObjectID: committed.id, jobID: nil, station: "rma-bench"),
                superseding: true, reason: "keys doctor")
            #expect(registered.status == .active)
        }
    }
}
