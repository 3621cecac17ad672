import Foundation

/// Who this connection writes as, for `keyline station check` (issue 23): the session's login,
/// whether the database trusts it (superuser or the schema owner's member, as the 0008 trigger
/// does), and its binding in `station_logins`, if any.
public struct SessionIdentity: Sendable, Equatable {
    public var login: String
    public var trusted: Bool
    public var binding: LoginBinding?
}

extension RegistryDatabase {
    /// The session's login, trust and binding (read as any role: station_logins is readable by all three).
    public func sessionIdentity() async throws -> SessionIdentity {
        try await run("read the login's binding") { transaction in
            let row = try transaction.queryOne("""
                SELECT session_user::text AS login, keyline_session_trusted('events'::regclass) AS trusted
                """)!
            let binding = try transaction.queryOne(
                "SELECT \(Self.bindingColumns) FROM station_logins WHERE login = session_user").map(Self.binding)
            return SessionIdentity(login: try row.decode("login"), trusted: try row.decode("trusted"), binding: binding)
        }
    }

    /// The database server's clock now (`clock_timestamp()`, not the transaction's start).
    public func databaseClock() async throws -> Date {
        try await run("read the database clock") { transaction in
            try transaction.queryOne("SELECT clock_timestamp() AS now")!.decode("now")
        }
    }
}
