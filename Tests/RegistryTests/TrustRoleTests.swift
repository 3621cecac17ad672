import Foundation
import Testing
@testable import Registry

/// Issue 21, items 7, 9 and 10 (schema 0011), with real logins as the role tests use.
@Suite("Trust roles")
struct TrustRoleTests {
    /// A registered key for a fresh device, written by the administrator.
    static func registered(_ admin: RegistryDatabase, _ fixture: RegistryFixture) async throws -> (String, KeyRegistration) {
        let device = randomDeviceID()
        let key = try await TestKey.random(using: admin.connection)
        let object = try await fixture.escrowed(deviceID: device, key: key)
        let registration = try await admin.registerKey(fixture.registration(deviceID: device, key: key,
                                                                            escrowObjectID: object.id))
        return (device, registration)
    }

    @Test("an RMA login — bound, unbound or bound elsewhere — cannot UPDATE a registration's status or revoke")
    func rmaCannotWriteStatusDirectly() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let (device, registration) = try await Self.registered(admin, fixture)
            let (_, bound) = try await database.login(memberOf: "keyline_rma")
            let (_, unbound) = try await database.login(memberOf: "keyline_rma", bound: false)
            let (_, elsewhere) = try await database.login(memberOf: "keyline_rma", station: "bench-02")

            for rma in [bound, unbound, elsewhere] {
                await expectServerError("42501") {
                    try await rma.connection.execute(
                        "UPDATE key_registrations SET status = 'superseded', status_reason = 'x' WHERE id = $1",
                        [registration.id])
                }
                await expectServerError("42501") {
                    _ = try await rma.revokeKey(productID: fixture.productID, deviceID: device, reason: "x",
                                                station: "rma-bench")
                }
            }
            // Through the function: not unbound, not as another bench.
            await expectServerError("42501") {
                _ = try await unbound.supersedeKey(productID: fixture.productID, deviceID: device, reason: "x",
                                                   station: "rma-bench")
            }
            await expectServerError("42501") {
                _ = try await elsewhere.supersedeKey(productID: fixture.productID, deviceID: device, reason: "x",
                                                     station: "rma-bench")
            }
            // A station has no say at all.
            let (_, station) = try await database.login(memberOf: "keyline_station")
            await expectServerError("42501") {
                _ = try await station.supersedeKey(productID: fixture.productID, deviceID: device, reason: "x",
                                                   station: RegistryFixture.station)
            }
            #expect(try await admin.activeRegistration(productID: fixture.productID, deviceID: device)?.id == registration.id)
            #expect(try await admin.events(deviceID: device).map(\.kind) == ["key.registered"])
        }
    }

    @Test("every status change records who, where, when and why, whoever makes it and however")
    func statusChangesAreRecorded() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let (user, rma) = try await database.login(memberOf: "keyline_rma")

            let (device, _) = try await Self.registered(admin, fixture)
            let superseded = try await rma.supersedeKey(productID: fixture.productID, deviceID: device,
                                                        reason: "replaced after RMA", ticket: "RMA-4711", station: "rma-bench")
            #expect(superseded.status == .superseded && superseded.statusReason == "replaced after RMA")
            let row = try await admin.connection.query("""
                SELECT status_changed_by, status_station, status_ticket FROM key_registrations WHERE id = $1
                """, [superseded.id])[0]
            #expect(try row.decode("status_changed_by", as: String.self) == user)
            #expect(try row.decode("status_station", as: String.self) == "rma-bench")
            #expect(try row.decode("status_ticket", as: String.self) == "RMA-4711")
            let event = try #require(try await admin.events(deviceID: device).last)
            #expect(event.kind == "key.superseded" && event.actor == user && event.station == "rma-bench")
            #expect(event.detail["reason"] == "replaced after RMA" && event.detail["ticket"] == "RMA-4711")
            #expect(event.detail["registration_id"] == String(superseded.id))

            // The administrator's own UPDATE gets its event too, and needs a reason.
            let (other, registration) = try await Self.registered(admin, fixture)
            await expectServerError("23514") {
                try await admin.connection.execute("UPDATE key_registrations SET status = 'revoked' WHERE id = $1",
                                                   [registration.id])
            }
            try await admin.connection.execute(
                "UPDATE key_registrations SET status = 'revoked', status_reason = 'stolen' WHERE id = $1", [registration.id])
            let revoked = try #require(try await admin.events(deviceID: other).last)
            #expect(revoked.kind == "key.revoked" && revoked.detail["reason"] == "stolen")
            #expect(revoked.station == "administrator")
            #expect(try await admin.events(deviceID: other).map(\.kind) == ["key.registered", "key.revoked"])
        }
    }

    @Test("the migration fails while a keyline role can create in a schema its SECURITY DEFINER functions use")
    func migrationRefusesCreatableSchema() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            defer { Task { await connection.close() } }
            let before = Migration.embedded.filter { $0.version < 11 }
            try await MigrationRunner(connection: connection, migrations: before).migrate()
            try await connection.execute("GRANT CREATE ON SCHEMA public TO keyline_station")
            await #expect {
                try await MigrationRunner(connection: connection).migrate()
            } throws: { error in
                guard case MigrationError.failed(version: 11, name: _, let postgres) = error else { return false }
                return postgres.sqlState == "42501" && postgres.message.contains("keyline_station")
                    && postgres.message.contains("public")
            }
            try await connection.execute("REVOKE CREATE ON SCHEMA public FROM keyline_station")
            try await MigrationRunner(connection: connection).migrate()
        }
    }

    @Test("every SECURITY DEFINER function keyline's migrations create searches only pg_catalog and pg_temp")
    func definerFunctionsArePinned() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let loose = try await admin.connection.query("""
                SELECT p.proname, coalesce(array_to_string(p.proconfig, ' '), '') FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE p.prosecdef AND n.nspname = 'public' AND p.proname LIKE 'keyline%'
                  AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY(p.proconfig), false)
                ORDER BY 1
                """).map { "\(try $0.decode(at: 0) as String) \(try $0.decode(at: 1) as String)" }
            #expect(loose == [])
        }
    }

    @Test("a station login that can create in public cannot shadow a function the who/where/when trigger calls")
    func stationCannotShadowFunctions() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            _ = try await admin.createProduct(id: "acme-sensor", name: "Acme sensor")
            let (user, station) = try await database.login(memberOf: "keyline_station")
            // A server where logins may create in public (PostgreSQL 14 and older, or granted later).
            try await admin.connection.execute("GRANT CREATE ON SCHEMA public TO \(user)")
            // currval(text) matches the trigger's text argument better than pg_catalog.currval(regclass).
            try await station.connection.execute("""
                CREATE FUNCTION public.currval(text) RETURNS bigint LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'shadowed: ran as %', current_user; END $$
                """)
            let event = try await station.appendEvent(kind: "test.shadow", station: RegistryFixture.station)
            #expect(event.actor == user)
        }
    }

    @Test("a restoration of a registration revoked since it was read is refused, not recorded restored")
    func restorationNeedsActiveRegistration() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let (device, registration) = try await Self.registered(admin, fixture)
            let (_, rma) = try await database.login(memberOf: "keyline_rma")
            _ = try await admin.revokeKey(productID: fixture.productID, deviceID: device, reason: "stolen",
                                          station: "security-office")
            await #expect {
                _ = try await rma.recordRestoration(registrationID: registration.id, station: "rma-bench", outcome: .restored)
            } throws: { error in
                guard case RegistryError.registrationNotActive(registration.id, "revoked") = error else { return false }
                return true
            }
            // The database holds the rule whatever the client does.
            await expectServerError("23514") {
                try await rma.connection.execute("""
                    INSERT INTO restorations (registration_id, product_id, device_id, escrow_object_id, station, outcome)
                    SELECT id, product_id, device_id, escrow_object_id, 'rma-bench', 'restored' FROM key_registrations WHERE id = $1
                    """, [registration.id])
            }
            // A failed attempt is still recorded.
            let failed = try await rma.recordRestoration(registrationID: registration.id, station: "rma-bench", outcome: .failed)
            #expect(failed.outcome == .failed)
            #expect(try await admin.restorations(productID: fixture.productID, deviceID: device).map(\.outcome) == [.failed])
        }
    }
}
