import Foundation
import Testing
@testable import Registry

/// Issue 12: who, which station and when come from the database, not from the client. Every role
/// (real LOGIN users, bound or not) against every table, each statement forging the login, the
/// time and the station, as a hostile client would send it.
@Suite("Audit trail")
struct AuditTrailTests {
    static let forgedTime = "2001-01-01 00:00:00+00"

    typealias Login = (user: String, registry: RegistryDatabase)

    /// The logins of one test: a bound station, another station, the bench, an auditor, and a
    /// station and a bench login nobody bound.
    struct Logins {
        var station: Login
        var otherStation: Login
        var rma: Login
        var auditor: Login
        var unboundStation: Login
        var unboundRMA: Login

        static func make(_ database: TestDatabase) async throws -> Logins {
            Logins(station: try await database.login(memberOf: "keyline_station"),
                   otherStation: try await database.login(memberOf: "keyline_station", station: "station-02"),
                   rma: try await database.login(memberOf: "keyline_rma"),
                   auditor: try await database.login(memberOf: "keyline_auditor"),
                   unboundStation: try await database.login(memberOf: "keyline_station", bound: false),
                   unboundRMA: try await database.login(memberOf: "keyline_rma", bound: false))
        }

        /// Each login with the station it writes as and the tables it may write.
        var all: [(name: String, user: String, registry: RegistryDatabase, station: String, writes: Set<String>)] {
            // Since 0010 an escrow object or registration written straight into its table, outside
            // the write-ahead escrow of a job (or a bench intent), is refused for every login
            // (BackedRegistrationTests): the forged rows below are such rows.
            let stationTables: Set<String> = ["jobs", "job_devices", "escrow_intents", "events", "job_device_steps"]
            return [
                ("station", station.user, station.registry, RegistryFixture.station, stationTables),
                ("rma", rma.user, rma.registry, "rma-bench", ["restorations", "events"]),
                ("auditor", auditor.user, auditor.registry, "audit", []),
                ("unbound station", unboundStation.user, unboundStation.registry, RegistryFixture.station, []),
                ("unbound rma", unboundRMA.user, unboundRMA.registry, "rma-bench", []),
            ]
        }
    }

    /// What every role tries on every table: an INSERT that forges who and when (and names the
    /// role's station), returning what was stored: `fresh` (the time is the database's, not 2001),
    /// the stored station and login (NULL where the table has none).
    static func forgedInserts(station: String, job: Int64, keyReadyDevice: String, keyReadyFingerprint: String,
                              registration: Int64) -> [(table: String, sql: String)] {
        let device = randomDeviceID()
        let fresh = "> now() - interval '1 hour'"
        let key = "WITH k AS (SELECT decode(md5(random()::text) || md5(random()::text), 'hex') AS b)"
        // An escrow object for the key of CTE `k` (random bytes, evaluated once).
        let object = """
            INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key, ciphertext_sha256,
                                        size_bytes, recipients, station, created_at)
            SELECT 'acme-sensor', '\(device)', encode(sha256(k.b), 'hex'), 'file:///forged', '\(device)/' || md5(k.b::text),
                   repeat('ab', 32), 1, ARRAY['age1x'], '\(station)', '\(forgedTime)' FROM k
            """
        return [
            ("products", "INSERT INTO products (id, name, created_at) VALUES ('rogue-\(device.prefix(6))', 'R', '\(forgedTime)') RETURNING created_at \(fresh) AS fresh, NULL::text AS station, NULL::text AS who"),
            ("jobs", "INSERT INTO jobs (product_id, station, pipeline, started_at) VALUES ('acme-sensor', '\(station)', 'p', '\(forgedTime)') RETURNING started_at \(fresh) AS fresh, station, NULL::text AS who"),
            ("job_devices", "INSERT INTO job_devices (job_id, device_id, state, station, created_at, updated_at) VALUES (\(job), '\(device)', 'detected', '\(station)', '\(forgedTime)', '\(forgedTime)') RETURNING created_at \(fresh) AND updated_at \(fresh) AS fresh, station, NULL::text AS who"),
            ("escrow_intents", "INSERT INTO escrow_intents (job_id, device_id, product_id, public_key_sha256, store_uri, object_key, ciphertext_sha256, size_bytes, recipients, station, created_at, updated_at) VALUES (\(job), '\(keyReadyDevice)', 'acme-sensor', '\(keyReadyFingerprint)', 'file:///s', 'k/\(device)', repeat('cd', 32), 1, ARRAY['age1x'], '\(station)', '\(forgedTime)', '\(forgedTime)') RETURNING created_at \(fresh) AND updated_at \(fresh) AS fresh, station, NULL::text AS who"),
            ("escrow_objects", "\(key) \(object) RETURNING created_at \(fresh) AS fresh, station, NULL::text AS who"),
            ("key_registrations", """
                \(key), e AS (\(object) RETURNING id, device_id)
                INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, station, registered_at)
                SELECT 'acme-sensor', e.device_id, 'ec', k.b, encode(sha256(k.b), 'hex'), e.id, '\(station)', '\(forgedTime)' FROM e, k
                RETURNING registered_at \(fresh) AS fresh, station, NULL::text AS who
                """),
            ("restorations", "INSERT INTO restorations (registration_id, product_id, device_id, escrow_object_id, station, operator, outcome, restored_at) SELECT id, product_id, device_id, escrow_object_id, '\(station)', 'keyline_admin', 'restored', '\(forgedTime)' FROM key_registrations WHERE id = \(registration) RETURNING restored_at \(fresh) AS fresh, station, operator AS who"),
            ("events", "INSERT INTO events (kind, actor, occurred_at, station) VALUES ('audit.forged', 'keyline_admin', '\(forgedTime)', NULL) RETURNING occurred_at \(fresh) AS fresh, station, actor AS who"),
            ("job_device_steps", "INSERT INTO job_device_steps (job_id, device_id, step, started_at, seconds, outcome, station, recorded_at) VALUES (\(job), '\(keyReadyDevice)', 'flash', now(), 1, 'done', '\(station)', '\(forgedTime)') RETURNING recorded_at \(fresh) AS fresh, station, NULL::text AS who"),
            ("schema_migrations", "INSERT INTO schema_migrations (version, name, sha256) VALUES (9999, 'forged', repeat('0', 64)) RETURNING true AS fresh, NULL::text AS station, NULL::text AS who"),
            ("station_logins", "INSERT INTO station_logins (login, role, station) VALUES ('kl_forged', 'station', 'station-99') RETURNING granted_at \(fresh) AS fresh, station, granted_by AS who"),
        ]
    }

    @Test("every role against every table: who, which station and when are the database's, or the write is refused")
    func everyRoleEveryTable() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let keyReadyDevice = randomDeviceID()
            let keyReadyKey = try await TestKey.random(using: admin.connection)
            try await fixture.keyReady(deviceID: keyReadyDevice, key: keyReadyKey)
            let registered = randomDeviceID()
            let registeredKey = try await TestKey.random(using: admin.connection)
            let object = try await fixture.escrowed(deviceID: registered, key: registeredKey)
            let registration = try await admin.registerKey(fixture.registration(deviceID: registered, key: registeredKey,
                                                                                escrowObjectID: object.id))
            let logins = try await Logins.make(database)
            var stored: [String: Set<String>] = [:]

            for login in logins.all {
                let inserts = Self.forgedInserts(station: login.station, job: fixture.job.id, keyReadyDevice: keyReadyDevice,
                                                 keyReadyFingerprint: keyReadyKey.fingerprint, registration: registration.id)
                for (table, sql) in inserts {
                    switch await capture({ try await login.registry.connection.query(sql) }) {
                    case .success(let rows):
                        stored[login.name, default: []].insert(table)
                        let row = try #require(rows.first)
                        #expect(try row.decode("fresh", as: Bool.self), "\(login.name) set the time of \(table)")
                        if let station = try row.decode("station", as: String?.self) {
                            #expect(station == login.station, "\(login.name) wrote \(table) as station \(station)")
                        }
                        if let who = try row.decode("who", as: String?.self) {
                            #expect(who == login.user, "\(login.name) wrote \(table) as \(who)")
                        }
                    case .failure(let error):
                        #expect((error as? PostgresError)?.sqlState == "42501", "\(login.name) on \(table): \(error)")
                    }
                }
                // Nobody but the administrator deletes or rewrites the record, or the bindings.
                for table in MigrationTests.tables {
                    await expectServerError("42501", "\(login.name) deleted from \(table)") {
                        try await login.registry.connection.execute("DELETE FROM \(table)")
                    }
                }
                await expectServerError("42501", "\(login.name) rebound itself") {
                    try await login.registry.connection.execute("UPDATE station_logins SET station = 'station-99'")
                }
            }
            #expect(stored["station"] == logins.all[0].writes)
            #expect(stored["rma"] == logins.all[1].writes)
            #expect(stored["auditor"] == nil && stored["unbound station"] == nil && stored["unbound rma"] == nil)
        }
    }

    @Test("a login writes only as its own station, and only into its own station's jobs")
    func onlyItsOwnStation() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            _ = try await admin.createProduct(id: "acme-sensor", name: "Acme sensor", platform: "boron")
            let logins = try await Logins.make(database)
            let station = logins.station.registry
            let other = logins.otherStation.registry

            // Another station's name: refused on every table that names one.
            await expectServerError("42501") {
                _ = try await station.createJob(productID: "acme-sensor", station: "station-02", pipeline: "p")
            }
            let job = try await station.createJob(productID: "acme-sensor", station: RegistryFixture.station, pipeline: "p")
            let otherJob = try await other.createJob(productID: "acme-sensor", station: "station-02", pipeline: "p")
            let fixture = RegistryFixture(registry: station, productID: "acme-sensor", job: job)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: admin.connection)
            await expectServerError("42501") {
                _ = try await station.startJobDevice(jobID: job.id, deviceID: device, platform: "boron", station: "station-02",
                                                     portPath: nil)
            }
            try await fixture.keyReady(deviceID: device, key: key)
            var intent = fixture.escrowObject(deviceID: device, key: key)
            intent.station = "station-02"
            await expectServerError("42501") { _ = try await station.recordEscrowIntent(intent) }
            await expectServerError("42501") { _ = try await station.appendEvent(kind: "job.note", station: "station-02") }
            let event = try await station.appendEvent(kind: "job.note", station: nil, jobID: job.id)
            #expect(event.station == RegistryFixture.station && event.actor == logins.station.user)

            // Another station's job: refused for every row that names a job, and for the job itself.
            await expectServerError("42501") {
                _ = try await station.startJobDevice(jobID: otherJob.id, deviceID: randomDeviceID(), platform: "boron",
                                                     station: RegistryFixture.station, portPath: nil)
            }
            await expectServerError("42501") { _ = try await station.appendEvent(kind: "job.note", station: nil, jobID: otherJob.id) }
            await expectServerError("42501") { _ = try await station.finishJob(id: otherJob.id, status: .failed) }
            await expectServerError("42501") { _ = try await other.finishJob(id: job.id, status: .cancelled) }
            await expectServerError("42501") {
                try await other.failJobDevice(jobID: job.id, deviceID: device, from: "key_ready", reason: "sabotage")
            }
            var foreign = fixture.escrowObject(deviceID: device, key: key, jobID: job.id)
            foreign.station = "station-02"
            await expectServerError("42501") { _ = try await other.recordEscrowObject(foreign) }
            await expectServerError("42501") {
                try await other.recordStep(StepRecord(jobID: job.id, deviceID: device, step: "flash", startedAt: Date(),
                                                      seconds: 1, attempts: 1, outcome: .done, station: "station-02"))
            }
            // The bench names no station's job.
            await expectServerError("42501") {
                _ = try await logins.rma.registry.appendEvent(kind: "key.note", station: nil, jobID: job.id)
            }

            // Finishing its own job: the database's time, whatever the client sends.
            await expectServerError("42501") {
                try await station.connection.execute("UPDATE jobs SET station = 'station-02' WHERE id = $1", [job.id])
            }
            try await station.connection.execute(
                "UPDATE jobs SET status = 'completed', finished_at = '\(Self.forgedTime)' WHERE id = $1", [job.id])
            let finished = try #require(try await admin.job(id: job.id))
            #expect(finished.status == .completed)
            #expect(try #require(finished.finishedAt) > Date(timeIntervalSinceNow: -3600))
            #expect(finished.startedAt > Date(timeIntervalSinceNow: -3600))
            #expect(try await admin.job(id: otherJob.id)?.status == .running)
        }
    }

    @Test("ids come from the database: INSERT … OVERRIDING SYSTEM VALUE is refused")
    func overridingSystemValue() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            _ = try await RegistryFixture.make(admin)
            let logins = try await Logins.make(database)
            let station = logins.station.registry.connection
            let rma = logins.rma.registry.connection
            // Values this session's sequence never issued, before and after it issued one.
            await expectServerError("42501") {
                try await station.execute("""
                    INSERT INTO jobs (id, product_id, station, pipeline) OVERRIDING SYSTEM VALUE
                    VALUES (424242, 'acme-sensor', 'station-01', 'p')
                    """)
            }
            await expectServerError("42501") {
                try await station.execute("INSERT INTO events (id, kind) OVERRIDING SYSTEM VALUE VALUES (1, 'audit.forged')")
            }
            let event = try await logins.station.registry.appendEvent(kind: "audit.note", station: nil)
            await expectServerError("42501") {
                try await station.execute("INSERT INTO events (id, kind) OVERRIDING SYSTEM VALUE VALUES ($1, 'audit.forged')",
                                          [event.id + 1000])
            }
            await expectServerError("42501") {
                try await rma.execute("INSERT INTO events (id, kind) OVERRIDING SYSTEM VALUE VALUES (7, 'audit.forged')")
            }
            await expectServerError("42501") {
                try await station.execute("""
                    INSERT INTO escrow_objects (id, product_id, device_id, public_key_sha256, store_uri, object_key,
                                                ciphertext_sha256, size_bytes, recipients, station) OVERRIDING SYSTEM VALUE
                    VALUES (5, 'acme-sensor', '\(randomDeviceID())', repeat('ef', 32), 'file:///s', 'x', repeat('ab', 32), 1,
                            ARRAY['age1x'], 'station-01')
                    """)
            }
            let forged = try await admin.connection.query(
                "SELECT (SELECT count(*) FROM events WHERE kind = 'audit.forged') + (SELECT count(*) FROM jobs WHERE id = 424242) AS n")
            #expect(try forged[0].decode("n", as: Int.self) == 0)
        }
    }

    @Test("escrow objects are append-only for every role, the owner included")
    func escrowObjectsAppendOnly() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let object = try await fixture.escrowed(deviceID: randomDeviceID(), key: try await TestKey.random(using: admin.connection))
            await expectServerError("23000") {
                try await admin.connection.execute("UPDATE escrow_objects SET object_key = 'elsewhere' WHERE id = $1", [object.id])
            }
            await expectServerError("23000") {
                try await admin.connection.execute("DELETE FROM escrow_objects WHERE id = $1", [object.id])
            }
            await expectServerError("23000") { try await admin.connection.execute("TRUNCATE escrow_objects CASCADE") }
            #expect(try await admin.escrowObject(id: object.id) == object)
        }
    }

    @Test("an unbound station login reads but writes nothing, and the refusal says how to bind it")
    func unboundLogin() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let (user, unbound) = try await database.login(memberOf: "keyline_station", bound: false)
            #expect(try await unbound.job(id: fixture.job.id) != nil)
            let error = await expectServerError("42501") {
                _ = try await unbound.createJob(productID: fixture.productID, station: RegistryFixture.station, pipeline: "p")
            }
            #expect(error?.description.contains("keyline db grant \(user)") == true, "\(String(describing: error))")
        }
    }
}
