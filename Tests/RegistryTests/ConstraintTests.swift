import Foundation
import Testing
@testable import Registry

/// Every constraint the schema promises, proven against the real database.
@Suite("Constraints")
struct ConstraintTests {
    @Test("device IDs are 24 lowercase hex digits")
    func deviceIDFormat() async throws {
        try await withTestDatabase { database in
            let fixture = try await RegistryFixture.make(try await database.registry())
            for bad in ["E00FCE68A1B2C3D4E5F60718", "e00fce68", "e00fce68a1b2c3d4e5f6071g", ""] {
                await expectServerError("23514", "device ID \(bad)") {
                    _ = try await fixture.registry.startJobDevice(jobID: fixture.job.id, deviceID: bad, platform: "boron",
                                                                  station: RegistryFixture.station, portPath: nil)
                }
            }
            let good = try await fixture.registry.startJobDevice(jobID: fixture.job.id, deviceID: "e00fce68a1b2c3d4e5f60718",
                                                                 platform: "boron", station: RegistryFixture.station,
                                                                 portPath: nil)
            #expect(good.attempts == 1)
        }
    }

    @Test("job device states are the workflow's; a failed device says why")
    func jobDeviceStates() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            await expectServerError("23514") {
                try await registry.connection.execute(
                    "INSERT INTO job_devices (job_id, device_id, state, station) VALUES ($1, $2, 'flashing', 's')",
                    [fixture.job.id, device])
            }
            _ = try await registry.startJobDevice(jobID: fixture.job.id, deviceID: device, platform: "boron",
                                                  station: RegistryFixture.station, portPath: nil)
            let constraint = await expectServerError("23514") {
                try await registry.connection.execute(
                    "UPDATE job_devices SET state = 'failed' WHERE job_id = $1 AND device_id = $2", [fixture.job.id, device])
            }
            #expect(constraint?.constraint == "job_devices_failed_has_error")
            let failed = try await registry.failJobDevice(jobID: fixture.job.id, deviceID: device, from: "detected",
                                                          reason: "erase of 0x08020000 timed out")
            #expect(failed.lastError == "erase of 0x08020000 timed out")
            let check = try await registry.connection.query(
                "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'job_devices'::regclass AND contype = 'c' AND conname = 'job_devices_state_check'")
            let definition = try check[0].decode("def", as: String.self)
            for state in RegistryFixture.workflowStates + ["failed"] { #expect(definition.contains("'\(state)'")) }
        }
    }

    @Test("escrowed needs an escrow object and registered/done an active registration from the job")
    func stateEvidence() async throws {
        try await withKeyReadyDevice { registry, fixture, device, key in
            let noObject = await expectServerError("23514") {
                try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "key_ready", to: "escrowed")
            }
            #expect(noObject?.constraint == "job_devices_escrowed_has_object")
            try await fixture.escrowed(deviceID: device, key: key)
            let noKey = await expectServerError("23514") {
                try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "escrowed", to: "registered")
            }
            #expect(noKey?.constraint == "job_devices_registered_has_key")
        }
    }

    @Test("the fingerprint must be the SHA-256 of the SPKI DER")
    func fingerprintMatchesSPKI() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: registry.connection)
            let object = try await fixture.escrowed(deviceID: device, key: key)
            var lying = fixture.registration(deviceID: device, key: key, escrowObjectID: object.id)
            lying.spkiDER[10] ^= 0xFF
            let error = await expectServerError("23514") { _ = try await registry.registerKey(lying) }
            #expect(error?.constraint == "key_registrations_fingerprint_matches_spki")
            #expect(try await registry.activeRegistration(productID: fixture.productID, deviceID: device) == nil)
        }
    }

    @Test("at most one active key per product and device: a second is a conflict naming device and fingerprints")
    func oneActiveKeyPerDevice() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            let first = try await TestKey.random(using: registry.connection)
            let second = try await TestKey.random(using: registry.connection)
            let firstObject = try await fixture.escrowed(deviceID: device, key: first)
            let secondObject = try await registry.recordEscrowObject(fixture.escrowObject(deviceID: device, key: second))
            _ = try await registry.registerKey(fixture.registration(deviceID: device, key: first, escrowObjectID: firstObject.id))
            do {
                _ = try await registry.registerKey(
                    fixture.registration(deviceID: device, key: second, escrowObjectID: secondObject.id, jobID: .some(nil)))
                Issue.record("a second active key was accepted")
            } catch let RegistryError.activeKeyConflict(product, conflictDevice, active, attempted) {
                #expect(product == fixture.productID)
                #expect(conflictDevice == device)
                #expect(active == first.fingerprint)
                #expect(attempted == second.fingerprint)
                let message = "\(RegistryError.activeKeyConflict(productID: product, deviceID: conflictDevice, activeFingerprint: active, attemptedFingerprint: attempted))"
                #expect(message.contains(device) && message.contains(second.fingerprint))
            }
            // The same device in another product is another registration.
            let other = try await RegistryFixture.make(registry, productID: "acme-gateway")
            let third = try await TestKey.random(using: registry.connection)
            let thirdObject = try await other.escrowed(deviceID: device, key: third)
            _ = try await registry.registerKey(other.registration(deviceID: device, key: third, escrowObjectID: thirdObject.id))
        }
    }

    @Test("a public key is registered once, ever: a second device is a conflict naming both")
    func fingerprintUnique() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let (deviceA, deviceB) = (randomDeviceID(), randomDeviceID())
            let key = try await TestKey.random(using: registry.connection)
            let objectA = try await fixture.escrowed(deviceID: deviceA, key: key)
            let objectB = try await fixture.escrowed(deviceID: deviceB, key: key)
            _ = try await registry.registerKey(fixture.registration(deviceID: deviceA, key: key, escrowObjectID: objectA.id))
            await #expect {
                _ = try await registry.registerKey(fixture.registration(deviceID: deviceB, key: key, escrowObjectID: objectB.id))
            } throws: { error in
                guard case let RegistryError.fingerprintConflict(fingerprint, attempted, registered, _) = error else { return false }
                return fingerprint == key.fingerprint && attempted == deviceB && registered == deviceA
                    && "\(error)".contains(deviceA) && "\(error)".contains(deviceB)
            }
            #expect(try await registry.jobDevice(jobID: fixture.job.id, deviceID: deviceB)?.state == "escrowed")
        }
    }

    @Test("a registration's escrow object must be for the same product, device and public key")
    func escrowObjectMustMatch() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let (deviceA, deviceB) = (randomDeviceID(), randomDeviceID())
            let keyA = try await TestKey.random(using: registry.connection)
            let keyB = try await TestKey.random(using: registry.connection)
            let objectA = try await fixture.escrowed(deviceID: deviceA, key: keyA)
            try await fixture.escrowed(deviceID: deviceB, key: keyB)
            // Device B's key with device A's backup.
            await #expect {
                _ = try await registry.registerKey(fixture.registration(deviceID: deviceB, key: keyB, escrowObjectID: objectA.id))
            } throws: { error in
                guard case RegistryError.escrowObjectMismatch(objectA.id, _, deviceB, keyB.fingerprint) = error else { return false }
                return true
            }
            // A nonexistent escrow object.
            await #expect(throws: RegistryError.self) {
                _ = try await registry.registerKey(fixture.registration(deviceID: deviceA, key: keyA, escrowObjectID: 999_999))
            }
        }
    }

    @Test("escrow objects are written once and carry a SHA-256, a size and recipients")
    func escrowObjectConstraints() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: registry.connection)
            let object = fixture.escrowObject(deviceID: device, key: key)
            let recorded = try await registry.recordEscrowObject(object)
            #expect(recorded.recipients == object.recipients)
            #expect(recorded.ciphertextSHA256 == object.ciphertextSHA256)
            await #expect {
                _ = try await registry.recordEscrowObject(object)
            } throws: { error in
                guard case RegistryError.escrowObjectExists(object.storeURI, object.objectKey) = error else { return false }
                return true
            }
            var bad = object
            bad.objectKey += ".2"
            bad.ciphertextSHA256 = "ABCD"
            await expectServerError("23514") { _ = try await registry.recordEscrowObject(bad) }
            bad.ciphertextSHA256 = object.ciphertextSHA256
            bad.sizeBytes = 0
            await expectServerError("23514") { _ = try await registry.recordEscrowObject(bad) }
            bad.sizeBytes = 10
            bad.recipients = []
            await expectServerError("23514") { _ = try await registry.recordEscrowObject(bad) }
            bad.recipients = object.recipients
            bad.productID = "no-such-product"
            await #expect {
                _ = try await registry.recordEscrowObject(bad)
            } throws: { error in
                guard case RegistryError.unknownProduct("no-such-product") = error else { return false }
                return true
            }
        }
    }

    @Test("a key is registered only from escrowed, and moves the device to registered in the same transaction")
    func registerRequiresEscrowed() async throws {
        try await withKeyReadyDevice { registry, fixture, device, key in
            // The escrow object is recorded but the state change to escrowed is not.
            let object = try await registry.recordEscrowObject(fixture.escrowObject(deviceID: device, key: key))
            await #expect {
                _ = try await registry.registerKey(fixture.registration(deviceID: device, key: key, escrowObjectID: object.id))
            } throws: { error in
                guard case RegistryError.notEscrowed(fixture.job.id, device, "key_ready") = error else { return false }
                return true
            }
            // Nothing was left behind by the failed transaction.
            #expect(try await registry.activeRegistration(productID: fixture.productID, deviceID: device) == nil)
            try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "key_ready", to: "escrowed")
            let registration = try await registry.registerKey(
                fixture.registration(deviceID: device, key: key, escrowObjectID: object.id))
            #expect(registration.status == .active)
            #expect(try await registry.jobDevice(jobID: fixture.job.id, deviceID: device)?.state == "registered")
        }
    }

    @Test("registrations are append-only: only active → superseded/revoked, once; never deleted")
    func registrationsAppendOnly() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: registry.connection)
            let object = try await fixture.escrowed(deviceID: device, key: key)
            let registration = try await registry.registerKey(
                fixture.registration(deviceID: device, key: key, escrowObjectID: object.id))
            let connection = registry.connection
            // Even the owner (the admin login) cannot rewrite history.
            await expectServerError("23000") {
                try await connection.execute("UPDATE key_registrations SET station = 'elsewhere' WHERE id = $1", [registration.id])
            }
            await expectServerError("23000") {
                try await connection.execute("UPDATE key_registrations SET spki_der = '\\x00'::bytea WHERE id = $1", [registration.id])
            }
            await expectServerError("23000") {
                try await connection.execute("DELETE FROM key_registrations WHERE id = $1", [registration.id])
            }
            await expectServerError("23000") { try await connection.execute("TRUNCATE key_registrations CASCADE") }

            let superseded = try await registry.supersedeKey(productID: fixture.productID, deviceID: device,
                                                             reason: "RMA 4711", station: "rma-bench")
            #expect(superseded.status == .superseded)
            #expect(superseded.statusChangedAt != nil)
            #expect(superseded.statusReason == "RMA 4711")
            await expectServerError("23000") {
                try await connection.execute("UPDATE key_registrations SET status = 'active' WHERE id = $1", [registration.id])
            }
            await expectServerError("23000") {
                try await connection.execute("UPDATE key_registrations SET status = 'revoked' WHERE id = $1", [registration.id])
            }
            await #expect {
                _ = try await registry.revokeKey(productID: fixture.productID, deviceID: device, reason: "x", station: "s")
            } throws: { error in
                guard case RegistryError.noActiveKey(fixture.productID, device) = error else { return false }
                return true
            }
            let rows = try await connection.query("SELECT count(*) AS n FROM key_registrations")
            #expect(try rows[0].decode("n", as: Int.self) == 1)
        }
    }

    @Test("events and restorations are append-only")
    func eventsAppendOnly() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let event = try await registry.appendEvent(kind: "job.started", station: RegistryFixture.station,
                                                       productID: fixture.productID, jobID: fixture.job.id,
                                                       detail: ["pipeline": "boron-factory"])
            #expect(event.detail == ["pipeline": "boron-factory"])
            let connection = registry.connection
            // The column defaults to session_user: the login this connection actually uses.
            let login = try await connection.query("SELECT session_user AS login, current_user AS role")[0]
            #expect(event.actor == (try login.decode("login", as: String.self)))
            #expect(event.actor == (try login.decode("role", as: String.self)))
            let (stationUser, stationRegistry) = try await database.login(memberOf: "keyline_station")
            let stationEvent = try await stationRegistry.appendEvent(kind: "job.started", station: RegistryFixture.station,
                                                                     productID: fixture.productID, jobID: fixture.job.id)
            #expect(stationEvent.actor == stationUser)
            await expectServerError("23000") {
                try await connection.execute("UPDATE events SET kind = 'job.hidden' WHERE id = $1", [event.id])
            }
            await expectServerError("23000") { try await connection.execute("DELETE FROM events WHERE id = $1", [event.id]) }
            await expectServerError("23000") { try await connection.execute("TRUNCATE events") }
            await expectServerError("23514") {
                _ = try await registry.appendEvent(kind: "Not A Kind", station: nil)
            }

            let device = randomDeviceID()
            let key = try await TestKey.random(using: connection)
            let object = try await fixture.escrowed(deviceID: device, key: key)
            let registration = try await registry.registerKey(
                fixture.registration(deviceID: device, key: key, escrowObjectID: object.id))
            let restoration = try await registry.recordRestoration(registrationID: registration.id, station: "rma-bench",
                                                                   outcome: .restored)
            await expectServerError("23000") {
                try await connection.execute("UPDATE restorations SET outcome = 'failed' WHERE id = $1", [restoration.id])
            }
            await expectServerError("23000") {
                try await connection.execute("DELETE FROM restorations WHERE id = $1", [restoration.id])
            }
        }
    }

    @Test("the remaining CHECK constraints refuse empty names, bad algorithms, counts and outcomes")
    func remainingChecks() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: registry.connection)
            let object = try await fixture.escrowed(deviceID: device, key: key)
            let registration = try await registry.registerKey(
                fixture.registration(deviceID: device, key: key, escrowObjectID: object.id))
            let connection = registry.connection
            let refused: [(String, [any PostgresEncodable])] = [
                ("INSERT INTO products (id, name) VALUES ('p2', '')", []),
                ("INSERT INTO jobs (product_id, station, pipeline) VALUES ($1, '', 'p')", [fixture.productID]),
                ("INSERT INTO jobs (product_id, station, pipeline) VALUES ($1, 's', '')", [fixture.productID]),
                ("INSERT INTO job_devices (job_id, device_id, state, attempts, station) VALUES ($1, $2, 'detected', 0, 's')",
                 [fixture.job.id, randomDeviceID()]),
                ("INSERT INTO job_devices (job_id, device_id, state, station) VALUES ($1, $2, 'detected', '')",
                 [fixture.job.id, randomDeviceID()]),
                ("""
                 INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, station)
                 VALUES ($1, $2, 'dsa', $3, $4, $5, 's')
                 """, [fixture.productID, randomDeviceID(), PostgresValue.bytea(key.spkiDER), key.fingerprint, object.id]),
                ("""
                 INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, station)
                 VALUES ($1, $2, 'ec', ''::bytea, encode(sha256(''::bytea), 'hex'), $3, 's')
                 """, [fixture.productID, randomDeviceID(), object.id]),
                ("""
                 INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id,
                                                station, status_changed_at)
                 VALUES ($1, $2, 'ec', $3, $4, $5, 's', now())
                 """, [fixture.productID, randomDeviceID(), PostgresValue.bytea(key.spkiDER), key.fingerprint, object.id]),
                ("""
                 INSERT INTO restorations (registration_id, product_id, device_id, escrow_object_id, station, outcome)
                 VALUES ($1, $2, $3, $4, 'bench', 'maybe')
                 """, [registration.id, fixture.productID, device, object.id]),
                ("""
                 INSERT INTO restorations (registration_id, product_id, device_id, escrow_object_id, station, outcome)
                 VALUES ($1, $2, $3, $4, '', 'restored')
                 """, [registration.id, fixture.productID, device, object.id]),
            ]
            for (sql, parameters) in refused {
                await expectServerError("23514", "\(sql)") { try await connection.execute(sql, parameters) }
            }
        }
    }

    @Test("a job is running until it finishes, and then has an end time")
    func jobStatus() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            #expect(fixture.job.status == .running && fixture.job.finishedAt == nil)
            await expectServerError("23514") {
                try await registry.connection.execute("UPDATE jobs SET status = 'completed' WHERE id = $1", [fixture.job.id])
            }
            let finished = try await registry.finishJob(id: fixture.job.id, status: .completed)
            #expect(finished.status == .completed && finished.finishedAt != nil)
            await #expect {
                _ = try await registry.createJob(productID: "nope", station: "s", pipeline: "p")
            } throws: { error in
                guard case RegistryError.unknownProduct("nope") = error else { return false }
                return true
            }
            await #expect {
                _ = try await registry.createProduct(id: fixture.productID, name: "again")
            } throws: { error in
                guard case RegistryError.productExists(fixture.productID) = error else { return false }
                return true
            }
            await expectServerError("23514") { _ = try await registry.createProduct(id: "bad id/with slash", name: "x") }
        }
    }
}
