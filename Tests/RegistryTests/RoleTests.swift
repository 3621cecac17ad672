import Foundation
import Testing
@testable import Registry

/// Each role's grants and denials, proven with real logins that are members of the roles
/// (not SET ROLE): the session user is the login, as it is for a station in the factory.
@Suite("Roles")
struct RoleTests {
    @Test("keyline_station provisions, but cannot rewrite or delete registrations or events")
    func station() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            _ = try await admin.createProduct(id: "acme-sensor", name: "Acme sensor")
            let (user, station) = try await database.login(memberOf: "keyline_station")
            let who = try await station.connection.query("SELECT session_user AS login, current_user AS role")
            #expect(try who[0].decode("login", as: String.self) == user)

            // Allowed: jobs, job devices (insert and update), escrow objects, registrations, events.
            let job = try await station.createJob(productID: "acme-sensor", station: RegistryFixture.station, pipeline: "boron")
            let fixture = RegistryFixture(registry: station, productID: "acme-sensor", job: job)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: station.connection)
            let object = try await fixture.escrowed(deviceID: device, key: key)
            let registration = try await station.registerKey(fixture.registration(deviceID: device, key: key,
                                                                                  escrowObjectID: object.id))
            let other = try await station.startJobDevice(jobID: job.id, deviceID: randomDeviceID(), platform: "boron",
                                                         station: RegistryFixture.station, portPath: "1-3")
            let failedOther = try await station.failJobDevice(jobID: job.id, deviceID: other.deviceID, from: "detected",
                                                              reason: "no DFU device after 10 s")
            #expect(failedOther.state == "failed" && failedOther.lastGoodState == "detected")
            let retried = try await station.resumeJobDevice(jobID: job.id, deviceID: failedOther.deviceID)
            #expect(retried.attempts == 2 && retried.state == "detected")
            _ = try await station.finishJob(id: job.id, status: .completed)
            let events = try await station.events(deviceID: device)
            #expect(events.map(\.kind) == ["key.registered"])
            #expect(events.first?.actor == user)

            // Denied: changing or deleting registrations and events, restorations, products.
            let connection = station.connection
            await expectServerError("42501") {
                try await connection.execute("UPDATE key_registrations SET status = 'revoked' WHERE id = $1", [registration.id])
            }
            await expectServerError("42501") {
                try await connection.execute("DELETE FROM key_registrations WHERE id = $1", [registration.id])
            }
            await expectServerError("42501") {
                try await connection.execute("UPDATE events SET kind = 'x' WHERE device_id = $1", [device])
            }
            await expectServerError("42501") { try await connection.execute("DELETE FROM events") }
            await expectServerError("42501") { try await connection.execute("TRUNCATE key_registrations") }
            await expectServerError("42501") { try await connection.execute("DELETE FROM job_devices") }
            await expectServerError("42501") { try await connection.execute("DELETE FROM escrow_objects") }
            await expectServerError("42501") {
                _ = try await station.recordRestoration(registrationID: registration.id, station: RegistryFixture.station, outcome: .restored)
            }
            await expectServerError("42501") { _ = try await station.createProduct(id: "rogue", name: "Rogue") }
            await expectServerError("42501") {
                try await connection.execute("UPDATE escrow_objects SET object_key = 'x' WHERE id = $1", [object.id])
            }
            await #expect {
                _ = try await station.revokeKey(productID: "acme-sensor", deviceID: device, reason: "x", station: RegistryFixture.station)
            } throws: { error in
                guard case RegistryError.permissionDenied = error else { return false }
                return "\(error)".contains("keyline_station")
            }
            #expect(try await admin.activeRegistration(productID: "acme-sensor", deviceID: device)?.id == registration.id)
        }
    }

    @Test("keyline_station runs the whole crash-safe workflow through the API as a real login")
    func stationRunsTheWorkflow() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            _ = try await admin.createProduct(id: "acme-sensor", name: "Acme sensor")
            let (_, station) = try await database.login(memberOf: "keyline_station")
            let job = try await station.createJob(productID: "acme-sensor", station: RegistryFixture.station, pipeline: "boron")
            let fixture = RegistryFixture(registry: station, productID: "acme-sensor", job: job)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: station.connection)
            _ = try await station.startJobDevice(jobID: job.id, deviceID: device, platform: "boron",
                                                 station: RegistryFixture.station, portPath: "1-2")
            try await station.advanceJobDevice(jobID: job.id, deviceID: device, from: "detected", to: "dfu", portPath: "1-3")
            try await station.failJobDevice(jobID: job.id, deviceID: device, from: "dfu", reason: "re-enumeration timed out")
            #expect(try await station.resumeJobDevice(jobID: job.id, deviceID: device).state == "dfu")
            try await fixture.keyReady(deviceID: device, key: key)
            _ = try await station.recordEscrowIntent(fixture.escrowObject(deviceID: device, key: key))
            _ = try await station.recordEscrowIntent(fixture.escrowObject(deviceID: device, key: key))
            let object = try await station.commitEscrow(jobID: job.id, deviceID: device)
            #expect(try await station.commitEscrow(jobID: job.id, deviceID: device) == object)
            #expect(try await station.escrowIntent(jobID: job.id, deviceID: device)?.committedEscrowObjectID == object.id)
            #expect(try await station.escrowObject(jobID: job.id, deviceID: device) == object)
            let registration = fixture.registration(deviceID: device, key: key, escrowObjectID: object.id)
            let registered = try await station.registerKey(registration)
            #expect(try await station.registerKey(registration) == registered)
            let done = try await station.advanceJobDevice(jobID: job.id, deviceID: device, from: "registered", to: "done")
            #expect(done.keyFingerprint == key.fingerprint && done.attempts == 2)
            #expect(try await station.unfinishedJobs(station: RegistryFixture.station).map(\.id) == [job.id])
            #expect(try await station.deviceRecords(deviceID: device) == [done])
            _ = try await station.finishJob(id: job.id, status: .completed)
            #expect(try await station.unfinishedJobs(station: RegistryFixture.station).isEmpty)
            // Still no way around the workflow: intents are never deleted.
            await expectServerError("42501") { try await station.connection.execute("DELETE FROM escrow_intents") }
        }
    }

    @Test("keyline_rma records restorations, supersedes and registers keys outside jobs, and nothing more")
    func rma() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: admin.connection)
            let object = try await fixture.escrowed(deviceID: device, key: key)
            let registration = try await admin.registerKey(fixture.registration(deviceID: device, key: key,
                                                                                escrowObjectID: object.id))
            let (user, rma) = try await database.login(memberOf: "keyline_rma")

            let restoration = try await rma.recordRestoration(registrationID: registration.id, station: "rma-bench",
                                                              outcome: .restored, detail: "blinking cyan after flash")
            #expect(restoration.operator == user)
            #expect(restoration.escrowObjectID == object.id)

            // Revoking is not the bench's call (row-level security allows only active → superseded).
            await expectServerError("42501") {
                _ = try await rma.revokeKey(productID: fixture.productID, deviceID: device, reason: "x", station: "rma-bench")
            }
            await expectServerError("42501") {
                try await rma.connection.execute("UPDATE key_registrations SET fingerprint = 'x' WHERE id = $1", [registration.id])
            }
            await expectServerError("42501") {
                try await rma.connection.execute("DELETE FROM key_registrations WHERE id = $1", [registration.id])
            }
            await expectServerError("42501") { try await rma.connection.execute("DELETE FROM restorations") }
            await expectServerError("42501") { try await rma.connection.execute("DELETE FROM events") }
            await expectServerError("42501") {
                _ = try await rma.createJob(productID: fixture.productID, station: "rma-bench", pipeline: "p")
            }
            // Since 0005 the bench escrows a key it finds on a returned device (a superseded key),
            // outside any job; it may not name a job's escrow object.
            let otherKey = try await TestKey.random(using: admin.connection)
            var found = fixture.escrowObject(deviceID: device, key: otherKey)
            found.jobID = nil
            found.station = "rma-bench"
            // Since 0010, write-ahead: its bench intent first (BackedRegistrationTests).
            try await rma.recordBenchEscrowIntent(found, reason: "found on a returned device")
            let foundObject = try await rma.commitBenchEscrow(storeURI: found.storeURI, objectKey: found.objectKey,
                                                              ciphertextSHA256: found.ciphertextSHA256)
            var inJob = fixture.escrowObject(deviceID: device, key: try await TestKey.random(using: admin.connection))
            inJob.jobID = fixture.job.id
            await #expect(throws: RegistryError.self) { _ = try await rma.recordEscrowObject(inJob) }
            // Since 0006 it registers keys outside jobs (`keys send`, `keys doctor`): active ones only,
            // never in a job. A copy of the active key (as the bench: 0008) passes the grant and meets the constraints.
            await expectServerError("23505") {
                try await rma.connection.execute(
                    "INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, station) SELECT product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, 'rma-bench' FROM key_registrations WHERE id = $1",
                    [registration.id])
            }
            await expectServerError("42501") {
                try await rma.connection.execute(
                    "INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, job_id, station) SELECT product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, job_id, station FROM key_registrations WHERE id = $1",
                    [registration.id])
            }
            await expectServerError("42501") {
                try await rma.connection.execute(
                    "INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, station, status) SELECT product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, station, 'superseded' FROM key_registrations WHERE id = $1",
                    [registration.id])
            }
            await expectServerError("42501") {
                try await rma.connection.execute("UPDATE job_devices SET state = 'failed', last_error = 'x'")
            }

            let superseded = try await rma.supersedeKey(productID: fixture.productID, deviceID: device,
                                                        reason: "replaced after RMA 4711", station: "rma-bench")
            #expect(superseded.status == .superseded)
            let kinds = try await admin.events(deviceID: device).map(\.kind)
            #expect(kinds == ["key.registered", "key.restored", "key.escrowed", "key.superseded"])

            // A bench re-key (`keys doctor`): the found key registered outside any job, superseding
            // nothing now; the same key again is a replay, not a second registration.
            let rekey = NewKeyRegistration(productID: fixture.productID, deviceID: device, algorithm: .ec,
                                           spkiDER: otherKey.spkiDER, fingerprint: otherKey.fingerprint,
                                           escrowObjectID: foundObject.id, jobID: nil, station: "rma-bench")
            let (registered, replaced) = try await rma.registerKey(rekey, superseding: true, reason: "keys doctor")
            #expect(registered.status == .active && replaced == nil)
            #expect(try await rma.registerKey(rekey, superseding: true, reason: "keys doctor").registered.id == registered.id)
            #expect(try await admin.events(deviceID: device).map(\.kind)
                    == ["key.registered", "key.restored", "key.escrowed", "key.superseded", "key.registered"])
        }
    }

    @Test("keyline_auditor reads everything and changes nothing")
    func auditor() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: admin.connection)
            let object = try await fixture.escrowed(deviceID: device, key: key)
            _ = try await admin.registerKey(fixture.registration(deviceID: device, key: key, escrowObjectID: object.id))
            let (_, auditor) = try await database.login(memberOf: "keyline_auditor")

            let audited = try await auditor.registrations(productID: fixture.productID)
            #expect(audited.count == 1)
            #expect(audited.first?.escrowObject.id == object.id)
            #expect(try await auditor.events(deviceID: device).count == 1)
            #expect(try await auditor.jobDevices(jobID: fixture.job.id).count == 1)
            for table in ["products", "jobs", "job_devices", "escrow_objects", "escrow_intents", "key_registrations", "restorations",
                          "events", "schema_migrations"] {
                try await auditor.connection.query("SELECT count(*) FROM \(table)")
            }

            await expectServerError("42501") { _ = try await auditor.appendEvent(kind: "audit.note", station: nil) }
            await expectServerError("42501") {
                _ = try await auditor.createJob(productID: fixture.productID, station: "s", pipeline: "p")
            }
            await expectServerError("42501") {
                try await auditor.failJobDevice(jobID: fixture.job.id, deviceID: device, from: "registered", reason: "x")
            }
            await expectServerError("42501") {
                _ = try await auditor.startJobDevice(jobID: fixture.job.id, deviceID: randomDeviceID(), platform: "p",
                                                     station: "s", portPath: nil)
            }
            await expectServerError("42501") {
                _ = try await auditor.supersedeKey(productID: fixture.productID, deviceID: device, reason: "x", station: "s")
            }
            await expectServerError("42501") { try await auditor.connection.execute("DELETE FROM events") }
            await expectServerError("42501") {
                try await auditor.connection.execute("UPDATE products SET name = 'x'")
            }
        }
    }
}
