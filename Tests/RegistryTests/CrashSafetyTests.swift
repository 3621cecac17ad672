import FailurePolicy
import Foundation
import Testing
@testable import Registry

/// The registry's half of issue 9's crash-safety contract (design.md, "What makes resume
/// possible"): forward-only states, the last good state kept on failure, and the key fingerprint
/// at key_ready (write-ahead escrow: WriteAheadEscrowTests).
@Suite("Crash safety")
struct CrashSafetyTests {
    static func stateConflict(_ error: any Error) -> (expected: String, actual: String?)? {
        guard case let RegistryError.stateConflict(_, _, expected, actual) = error else { return nil }
        return (expected, actual)
    }

    static func isStateConflict(_ error: any Error, _ expected: String, _ actual: String?) -> Bool {
        guard let conflict = stateConflict(error) else { return false }
        return conflict.expected == expected && conflict.actual == actual
    }

    @Test("a lost race and a replayed move are state conflicts, never silent overwrites")
    func lostRaceAndReplay() async throws {
        try await withTestDatabase { database in
            let setup = try await database.registry()
            let fixture = try await RegistryFixture.make(setup)
            let (taskA, taskB) = (try await database.registry(), try await database.registry())
            for _ in 0..<6 {
                let device = randomDeviceID()
                _ = try await setup.startJobDevice(jobID: fixture.job.id, deviceID: device, platform: "boron",
                                                   station: RegistryFixture.station, portPath: "1-1")
                // Both think the device is detected; exactly one moves it.
                async let a = capture { try await taskA.advanceJobDevice(jobID: fixture.job.id, deviceID: device,
                                                                         from: "detected", to: "dfu") }
                async let b = capture { try await taskB.failJobDevice(jobID: fixture.job.id, deviceID: device,
                                                                      from: "detected", reason: "unplugged") }
                let results = await [a, b]
                let winners = results.compactMap { try? $0.get() }
                #expect(winners.count == 1)
                for case .failure(let error) in results {
                    let conflict = Self.stateConflict(error)
                    #expect(conflict?.expected == "detected")
                    #expect(conflict?.actual == winners.first?.state)
                    #expect(error.failureClass == .badDevice)
                }
                #expect(try await setup.jobDevice(jobID: fixture.job.id, deviceID: device)?.state == winners.first?.state)
            }

            // A replay of a move that already happened changes nothing and says where the device is.
            let device = randomDeviceID()
            _ = try await setup.startJobDevice(jobID: fixture.job.id, deviceID: device, platform: "boron",
                                               station: RegistryFixture.station, portPath: nil)
            try await setup.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "detected", to: "dfu")
            try await setup.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "dfu", to: "flashed")
            let before = try #require(try await setup.jobDevice(jobID: fixture.job.id, deviceID: device))
            await #expect {
                try await setup.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "detected", to: "dfu")
            } throws: { Self.isStateConflict($0, "detected", "flashed") }
            #expect(try await setup.jobDevice(jobID: fixture.job.id, deviceID: device) == before)
            // A device not in the job.
            await #expect {
                try await setup.advanceJobDevice(jobID: fixture.job.id, deviceID: randomDeviceID(), from: "detected", to: "dfu")
            } throws: { Self.isStateConflict($0, "detected", nil) }
            // Starting again returns the row as it is (a resume sees the device again).
            let again = try await setup.startJobDevice(jobID: fixture.job.id, deviceID: device, platform: "boron",
                                                       station: RegistryFixture.station, portPath: "9-9")
            #expect(again == before)
        }
    }

    @Test("failed keeps the last good state; resume continues there and counts an attempt")
    func failedKeepsLastGoodState() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            _ = try await registry.startJobDevice(jobID: fixture.job.id, deviceID: device, platform: "photon",
                                                  station: RegistryFixture.station, portPath: "1-2")
            try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "detected", to: "dfu")
            try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "dfu", to: "flashed")
            await #expect {
                try await registry.failJobDevice(jobID: fixture.job.id, deviceID: device, from: "dfu", reason: "x")
            } throws: { Self.isStateConflict($0, "dfu", "flashed") }
            let failed = try await registry.failJobDevice(jobID: fixture.job.id, deviceID: device, from: "flashed",
                                                          reason: "server key write timed out")
            #expect(failed.state == "failed" && failed.lastGoodState == "flashed")
            #expect(failed.lastError == "server key write timed out" && failed.attempts == 1)
            #expect(failed.platform == "photon" && failed.portPath == "1-2")

            let resumed = try await registry.resumeJobDevice(jobID: fixture.job.id, deviceID: device)
            #expect(resumed.state == "flashed" && resumed.lastGoodState == nil && resumed.attempts == 2)
            // Not failed: unchanged.
            #expect(try await registry.resumeJobDevice(jobID: fixture.job.id, deviceID: device) == resumed)
            let next = try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "flashed",
                                                           to: "server_key", portPath: "1-3")
            #expect(next.portPath == "1-3" && next.attempts == 2)
        }
    }

    @Test("key_ready needs the fingerprint of the key read back; it is recorded and never changes")
    func fingerprintAtKeyReady() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: registry.connection)
            let other = try await TestKey.random(using: registry.connection)
            _ = try await registry.startJobDevice(jobID: fixture.job.id, deviceID: device, platform: "boron",
                                                  station: RegistryFixture.station, portPath: nil)
            for (from, to) in [("detected", "dfu"), ("dfu", "flashed"), ("flashed", "server_key")] {
                try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: from, to: to)
            }
            await #expect {
                try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "server_key", to: "key_ready")
            } throws: { error in
                guard case RegistryError.keyFingerprintRequired = error else { return false }
                return true
            }
            let raw = await expectServerError("23514") {
                try await registry.connection.execute(
                    "UPDATE job_devices SET state = 'key_ready' WHERE job_id = $1 AND device_id = $2", [fixture.job.id, device])
            }
            #expect(raw?.constraint == "job_devices_key_ready_has_fingerprint")

            let ready = try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "server_key",
                                                            to: "key_ready", keyFingerprint: key.fingerprint)
            #expect(ready.keyFingerprint == key.fingerprint)
            // Kept through a failure and resume; another key is refused everywhere.
            try await registry.failJobDevice(jobID: fixture.job.id, deviceID: device, from: "key_ready", reason: "x")
            let resumed = try await registry.resumeJobDevice(jobID: fixture.job.id, deviceID: device)
            #expect(resumed.state == "key_ready" && resumed.keyFingerprint == key.fingerprint)
            let fixed = await expectServerError("23514") {
                try await registry.connection.execute(
                    "UPDATE job_devices SET key_fingerprint = $3 WHERE job_id = $1 AND device_id = $2",
                    [fixture.job.id, device, other.fingerprint])
            }
            #expect(fixed?.constraint == "job_devices_key_fingerprint_fixed")
            await #expect {
                _ = try await registry.recordEscrowIntent(fixture.escrowObject(deviceID: device, key: other))
            } throws: { error in
                guard case RegistryError.keyFingerprintMismatch(_, device, key.fingerprint, other.fingerprint) = error else {
                    return false
                }
                return error.failureClass == .badDevice
            }
            // Registration takes only the recorded key, even with a valid backup of another.
            try await fixture.escrowed(deviceID: device, key: key)
            let otherObject = try await registry.recordEscrowObject(fixture.escrowObject(deviceID: device, key: other))
            await #expect {
                _ = try await registry.registerKey(fixture.registration(deviceID: device, key: other,
                                                                        escrowObjectID: otherObject.id))
            } throws: { error in
                guard case RegistryError.keyFingerprintMismatch(_, device, key.fingerprint, other.fingerprint) = error else {
                    return false
                }
                return true
            }
            #expect(try await registry.jobDevice(jobID: fixture.job.id, deviceID: device)?.keyFingerprint == key.fingerprint)
        }
    }

    @Test("the trigger refuses backward and skipping moves, even from the owner in raw SQL")
    func triggerRefusesOutOfOrderMoves() async throws {
        try await withKeyReadyDevice { owner, fixture, device, key in
            let connection = owner.connection
            func refused(_ sql: String, _ parameters: [any PostgresEncodable] = [],
                         sourceLocation: SourceLocation = #_sourceLocation) async {
                let error = await expectServerError("23514", "\(sql)", sourceLocation: sourceLocation) {
                    try await connection.execute(sql, parameters)
                }
                #expect(error?.constraint == "job_devices_forward_only", sourceLocation: sourceLocation)
            }
            let this = "WHERE job_id = \(fixture.job.id) AND device_id = '\(device)'"
            await refused("UPDATE job_devices SET state = 'server_key' \(this)")                         // backward
            await refused("UPDATE job_devices SET state = 'detected' \(this)")                           // far back
            await refused("UPDATE job_devices SET state = 'done' \(this)")                               // skip
            await refused("INSERT INTO job_devices (job_id, device_id, state, station) VALUES ($1, $2, 'dfu', 's')",
                          [fixture.job.id, randomDeviceID()])                                            // enter late
            // failed → only back to the last good state.
            _ = try await connection.execute("UPDATE job_devices SET state = 'failed', last_error = 'x' \(this)")
            let failed = try #require(try await owner.jobDevice(jobID: fixture.job.id, deviceID: device))
            #expect(failed.lastGoodState == "key_ready")
            await refused("UPDATE job_devices SET state = 'flashed' \(this)")
            await refused("UPDATE job_devices SET state = 'escrowed' \(this)")
            // Only the trigger sets the last good state: a client cannot erase it.
            _ = try await connection.execute("UPDATE job_devices SET last_good_state = NULL \(this)")
            #expect(try await owner.jobDevice(jobID: fixture.job.id, deviceID: device) == failed)

            // Through the API: a move the workflow does not have is an invalid transition.
            let other = randomDeviceID()
            _ = try await owner.startJobDevice(jobID: fixture.job.id, deviceID: other, platform: "boron",
                                               station: RegistryFixture.station, portPath: nil)
            await #expect {
                try await owner.advanceJobDevice(jobID: fixture.job.id, deviceID: other, from: "detected", to: "flashed")
            } throws: { error in
                guard case RegistryError.invalidTransition(_, other, "detected", "flashed") = error else { return false }
                return error.failureClass == .badInput
            }
            #expect(try await owner.jobDevice(jobID: fixture.job.id, deviceID: other)?.state == "detected")
            // done is final: it does not fail.
            let doneDevice = randomDeviceID()
            let doneKey = try await TestKey.random(using: connection)
            let object = try await fixture.escrowed(deviceID: doneDevice, key: doneKey)
            _ = try await owner.registerKey(fixture.registration(deviceID: doneDevice, key: doneKey, escrowObjectID: object.id))
            try await owner.advanceJobDevice(jobID: fixture.job.id, deviceID: doneDevice, from: "registered", to: "done")
            await #expect {
                try await owner.failJobDevice(jobID: fixture.job.id, deviceID: doneDevice, from: "done", reason: "x")
            } throws: { error in
                guard case RegistryError.invalidTransition(_, doneDevice, "done", "failed") = error else { return false }
                return true
            }
        }
    }

    @Test("unfinished jobs of a station and a device's records across jobs, oldest first")
    func unfinishedJobsAndDeviceRecords() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let second = try await registry.createJob(productID: fixture.productID, station: RegistryFixture.station,
                                                      pipeline: "boron-factory")
            let finished = try await registry.createJob(productID: fixture.productID, station: RegistryFixture.station,
                                                        pipeline: "boron-factory")
            _ = try await registry.finishJob(id: finished.id, status: .completed)
            let elsewhere = try await registry.createJob(productID: fixture.productID, station: "station-02",
                                                         pipeline: "boron-factory")
            #expect(try await registry.unfinishedJobs(station: RegistryFixture.station).map(\.id) == [fixture.job.id, second.id])
            #expect(try await registry.unfinishedJobs(station: "station-02").map(\.id) == [elsewhere.id])
            #expect(try await registry.unfinishedJobs(station: "station-99").isEmpty)

            let device = randomDeviceID()
            for job in [second, fixture.job, elsewhere] {
                _ = try await registry.startJobDevice(jobID: job.id, deviceID: device, platform: "boron",
                                                      station: job.station, portPath: nil)
            }
            try await registry.failJobDevice(jobID: second.id, deviceID: device, from: "detected", reason: "no DFU")
            _ = try await registry.startJobDevice(jobID: fixture.job.id, deviceID: randomDeviceID(), platform: "boron",
                                                  station: RegistryFixture.station, portPath: nil)
            let records = try await registry.deviceRecords(deviceID: device)
            #expect(records.map(\.jobID) == [second.id, fixture.job.id, elsewhere.id])
            #expect(records.map(\.state) == ["failed", "detected", "detected"])
            #expect(try await registry.deviceRecords(deviceID: randomDeviceID()).isEmpty)
        }
    }

    @Test("migration 0003 on a registry in use: failed rows get a last good state, fingerprints come from escrow objects")
    func upgradeBackfills() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            try await MigrationRunner(connection: connection, migrations: Array(Migration.embedded.prefix(2))).migrate()
            let registry = RegistryDatabase(client: connection)
            let fixture = try await RegistryFixture.make(registry)
            let key = try await TestKey.random(using: connection)
            let (failed, keyReady, escrowed) = (randomDeviceID(), randomDeviceID(), randomDeviceID())
            for (device, state) in [(failed, "failed"), (keyReady, "key_ready"), (escrowed, "key_ready")] {
                _ = try await connection.execute("""
                    INSERT INTO job_devices (job_id, device_id, state, last_error, station) VALUES ($1, $2, $3, $4, 's')
                    """, [fixture.job.id, device, state, state == "failed" ? "old failure" : nil])
            }
            _ = try await registry.recordEscrowObject(fixture.escrowObject(deviceID: escrowed, key: key))
            _ = try await connection.execute("UPDATE job_devices SET state = 'escrowed' WHERE device_id = $1", [escrowed])

            try await MigrationRunner(connection: connection).migrate()
            let rows = try await registry.jobDevices(jobID: fixture.job.id)
            let byDevice = Dictionary(uniqueKeysWithValues: rows.map { ($0.deviceID, $0) })
            #expect(byDevice[failed]?.lastGoodState == "detected")
            #expect(byDevice[escrowed]?.state == "escrowed" && byDevice[escrowed]?.keyFingerprint == key.fingerprint)
            // Which key a key_ready device held is unknown: it fails and is read again from server_key.
            #expect(byDevice[keyReady]?.state == "failed" && byDevice[keyReady]?.lastGoodState == "server_key")
            await connection.close()
        }
    }

    @Test("failure classes: connection loss and serialization retry, infrastructure needs an operator, conflicts fail the device")
    func failureClasses() {
        let lost = PostgresError(kind: .connectionLost, message: "server closed the connection")
        #expect(lost.failureClass == .retryable)
        #expect(RegistryError.database(lost).failureClass == .retryable)
        #expect(PostgresError(kind: .server, sqlState: "40001", message: "could not serialize").failureClass == .retryable)
        #expect(PostgresError(kind: .server, sqlState: "40P01", message: "deadlock").failureClass == .retryable)
        #expect(PostgresError(kind: .server, sqlState: "57P01", message: "terminating").failureClass == .retryable)
        #expect(PostgresError(kind: .connectionFailed, message: "no such socket").failureClass == .needsOperator)
        #expect(PostgresError(kind: .connectionFailed, sqlState: "28P01", message: "password").failureClass == .needsOperator)
        #expect(PostgresError(kind: .invalidSettings, message: "bad URL").failureClass == .needsOperator)
        #expect(PostgresError(kind: .server, sqlState: "53100", message: "disk full").failureClass == .needsOperator)
        let denied = PostgresError(kind: .server, sqlState: "42501", message: "permission denied")
        #expect(denied.failureClass == .needsOperator)
        #expect(RegistryError.permissionDenied(action: "x", denied).failureClass == .needsOperator)
        #expect(RegistryError.stateConflict(jobID: 1, deviceID: "d", expected: "dfu", actual: "flashed").failureClass == .badDevice)
        #expect(RegistryError.activeKeyConflict(productID: "p", deviceID: "d", activeFingerprint: nil,
                                                attemptedFingerprint: "f").failureClass == .badDevice)
        #expect(RegistryError.fingerprintConflict(fingerprint: "f", attemptedDeviceID: "d", registeredDeviceID: "e",
                                                  registeredProductID: "p").failureClass == .badDevice)
        #expect(RegistryError.unknownProduct("p").failureClass == .badInput)
    }
}
