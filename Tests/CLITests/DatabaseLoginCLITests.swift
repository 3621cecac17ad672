import Foundation
import Testing
import TestSupport

/// `keyline db grant|revoke|logins` against a fresh database, with real logins created by psql.
@Suite("keyline db grant")
struct DatabaseLoginCLITests {
    @Test("grant binds a login to its role and station, logins lists it and the unbound, revoke removes it")
    func grantListRevoke() async throws {
        let suffix = String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        let login = "kl_cli_station_" + suffix
        let unbound = "kl_cli_unbound_" + suffix
        try await DatabaseCLITests.psql("CREATE ROLE \(login) LOGIN")
        var failure: (any Error)?
        do { try await Self.grantListRevoke(login: login, unbound: unbound, suffix: suffix) } catch { failure = error }
        // Roles are cluster-wide: dropped whatever happened (the test database is gone by now).
        try? await DatabaseCLITests.psql("DROP ROLE IF EXISTS \(login); DROP ROLE IF EXISTS \(unbound)")
        if let failure { throw failure }
    }

    static func grantListRevoke(login: String, unbound: String, suffix: String) async throws {
        try await DatabaseCLITests.withFreshDatabase { environment in
            #expect(try await KeylineBinary.run(["db", "migrate"], environment: environment).status == 0)
            // keyline_rma exists once a migration made it (on a fresh cluster, this one).
            try await DatabaseCLITests.psql("CREATE ROLE \(unbound) LOGIN IN ROLE keyline_rma")

            let granted = try await KeylineBinary.run(["db", "grant", login, "--role", "station", "--station", "station-07", "--json"],
                                                      environment: environment)
            #expect(granted.status == 0, "\(granted.stderr)")
            let binding = try granted.json()["granted"] as? [String: Any]
            #expect(binding?["station"] as? String == "station-07")
            #expect(binding?["databaseRole"] as? String == "keyline_station")

            let noStation = try await KeylineBinary.run(["db", "grant", login, "--role", "rma", "--json"], environment: environment)
            #expect(noStation.status == 64)
            #expect((try noStation.json()["error"] as? [String: Any])?["kind"] as? String == "stationRequired")
            let auditorStation = try await KeylineBinary.run(["db", "grant", login, "--role", "auditor", "--station", "x"],
                                                             environment: environment)
            #expect(auditorStation.status == 64 && auditorStation.stderr.contains("takes no --station"))
            let nobody = try await KeylineBinary.run(["db", "grant", "kl_nobody_" + suffix, "--role", "auditor", "--json"],
                                                     environment: environment)
            #expect(nobody.status == 65)
            #expect((try nobody.json()["error"] as? [String: Any])?["kind"] as? String == "unknownLogin")

            let listed = try await KeylineBinary.run(["db", "logins", "--json"], environment: environment)
            #expect(listed.status == 0, "\(listed.stderr)")
            let json = try listed.json()
            let logins = json["logins"] as? [[String: Any]] ?? []
            #expect(logins.map { $0["login"] as? String } == [login])
            #expect(logins.first?["role"] as? String == "station")
            let unboundLogins = (json["unbound"] as? [[String: Any]] ?? []).compactMap { $0["login"] as? String }
            #expect(unboundLogins.contains(unbound) && !unboundLogins.contains(login))
            let human = try await KeylineBinary.run(["db", "logins"], environment: environment)
            #expect(human.stdout.contains(login) && human.stdout.contains("station-07"))
            #expect(human.stdout.contains(unbound) && human.stdout.contains("its writes are refused"))

            // The bound login itself may not change bindings (the local cluster trusts its socket).
            let host = environment["PGHOST"] ?? ProcessInfo.processInfo.environment["PGHOST"] ?? ""
            if (environment["DATABASE_URL"] ?? "").isEmpty, host.hasPrefix("/") {
                var asStation = environment
                asStation["PGUSER"] = login
                let selfGrant = try await KeylineBinary.run(["db", "grant", login, "--role", "rma", "--station", "rma-bench", "--json"],
                                                            environment: asStation)
                #expect(selfGrant.status == 77, "\(selfGrant.stdout) \(selfGrant.stderr)")
            }

            let revoked = try await KeylineBinary.run(["db", "revoke", login], environment: environment)
            #expect(revoked.status == 0, "\(revoked.stderr)")
            #expect(revoked.stdout.contains("unbound (was keyline_station, station station-07)"))
            let again = try await KeylineBinary.run(["db", "revoke", login, "--json"], environment: environment)
            #expect(again.status == 65)
            #expect((try again.json()["error"] as? [String: Any])?["kind"] as? String == "loginNotBound")

            let help = try await KeylineBinary.run(["db", "grant", "--help"], environment: environment)
            #expect(help.stdout.contains("EXIT CODES") && help.stdout.contains("77"))
        }
    }
}
