import ArgumentParser
import Foundation
import Registry
import CommandReporting

/// `keyline db grant|revoke|logins`: which login is which station, bench or auditor. The database
/// takes who, which station and when from these bindings, never from what a client sends.
extension DatabaseCommand {
    static let bindingHelp = """
        Each station and RMA login is bound to one station or bench name; for every row it \
        writes, the database records the login, the current time and that station, refuses any \
        other station name, another station's job, and ids chosen by the client. A login of \
        keyline_station or keyline_rma without a binding can read but not write. Logins are \
        created by the administrator (CREATE ROLE name LOGIN PASSWORD …); role memberships are \
        cluster-wide, bindings belong to this database. Needs the administrator's login (owner of \
        the schema with CREATEROLE, or a superuser).
        """

    struct Grant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bind a login to its role and station or bench.",
            discussion: """
                Makes LOGIN a member of keyline_station, keyline_rma or keyline_auditor (and of no \
                other keyline role) and binds it to --station (required for station and rma, not \
                taken by auditor). Granting again replaces the binding. Appends a login.granted event.

                \(DatabaseCommand.bindingHelp)

                \(DatabaseCommand.loginExitHelp)
                """)

        @Argument(help: "The PostgreSQL login (it must exist).")
        var login: String
        @Option(help: "station, rma or auditor.")
        var role: LoginRole
        @Option(help: "The station or bench the login writes as (stations and rma only).")
        var station: String?
        @OptionGroup var schema: SchemaOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let (database, binding) = try await RegistryAdministration.grant(login, role: role, station: station)
                if output.json {
                    CLI.printJSON(["database": database, "granted": binding.json])
                } else {
                    print("\(binding.login): \(role.databaseRole)" + (binding.station.map { ", station \($0)" } ?? ""))
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a login's binding and its keyline roles.",
            discussion: """
                Deletes LOGIN's binding and revokes keyline_station, keyline_rma and keyline_auditor \
                from it; the login itself stays (DROP ROLE is the administrator's). Rows it wrote keep \
                its name. Appends a login.revoked event.

                \(DatabaseCommand.bindingHelp)

                \(DatabaseCommand.loginExitHelp)
                """)

        @Argument(help: "The login to unbind.")
        var login: String
        @OptionGroup var schema: SchemaOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let (database, removed) = try await RegistryAdministration.revoke(login)
                if output.json {
                    CLI.printJSON(["database": database, "revoked": removed.json])
                } else {
                    print("\(removed.login): unbound (was \(removed.role.databaseRole)"
                          + (removed.station.map { ", station \($0)" } ?? "") + ")")
                }
            }
        }
    }

    struct Logins: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the logins bound to stations, benches and audits.",
            discussion: """
                Lists every binding (login, role, station, granted by and when) and, as unbound, the \
                logins that are members of a keyline role without a binding (their writes are refused).

                \(DatabaseCommand.bindingHelp)

                \(DatabaseCommand.loginExitHelp)
                """)

        @OptionGroup var schema: SchemaOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let (database, bound, unbound) = try await RegistryAdministration.logins()
                if output.json {
                    CLI.printJSON([
                        "database": database,
                        "logins": bound.map(\.json),
                        "unbound": unbound.map { ["login": $0.login, "roles": $0.roles] },
                    ])
                    return
                }
                print(database)
                if bound.isEmpty { print("  no bound logins: bind one with `keyline db grant LOGIN --role … --station …`") }
                for binding in bound {
                    let when = ISO8601DateFormatter().string(from: binding.grantedAt)
                    print("  \(binding.login.padding(toLength: 24, withPad: " ", startingAt: 0)) "
                          + "\(binding.role.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) "
                          + "\((binding.station ?? "-").padding(toLength: 20, withPad: " ", startingAt: 0)) "
                          + "granted \(when) by \(binding.grantedBy)")
                }
                for login in unbound {
                    print("  \(login.login.padding(toLength: 24, withPad: " ", startingAt: 0)) unbound: member of "
                          + "\(login.roles.joined(separator: ", ")); its writes are refused until `keyline db grant`")
                }
            }
        }
    }

    static let loginExitHelp = """
        EXIT CODES
          0   done
          64  usage error, or --station missing (station, rma) or given (auditor)
          65  no such login on the server, or (revoke) the login is not bound
          75  database unreachable or connection lost: retry
          77  the login running keyline may not grant roles or change bindings
          78  malformed DATABASE_URL, login refused or no such database
        """
}

extension LoginRole: ExpressibleByArgument {}

extension LoginBinding {
    var json: [String: Any] {
        var object: [String: Any] = ["login": login, "role": role.rawValue, "databaseRole": role.databaseRole,
                                     "grantedBy": grantedBy, "grantedAt": ISO8601DateFormatter().string(from: grantedAt)]
        object["station"] = station
        return object
    }
}
