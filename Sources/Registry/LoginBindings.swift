import FailurePolicy
import Foundation

/// What a login does in the registry; each is a PostgreSQL role the login is made a member of.
public enum LoginRole: String, Sendable, CaseIterable, Codable {
    case station, rma, auditor

    /// The PostgreSQL role (created by migration 0002).
    public var databaseRole: String { "keyline_\(rawValue)" }

    /// Stations and the RMA bench write rows, so they write as a named station or bench.
    public var needsStation: Bool { self != .auditor }
}

/// One login's binding (table `station_logins`): the database sets who, which station and when
/// on every row the login writes, from this row and the session, never from the client.
public struct LoginBinding: Sendable, Equatable {
    public var login: String
    public var role: LoginRole
    public var station: String?
    public var grantedBy: String
    public var grantedAt: Date
}

/// A login that is a member of a keyline role but has no binding: its writes are refused.
public struct UnboundLogin: Sendable, Equatable {
    public var login: String
    public var roles: [String]
}

/// Why a grant or revoke was refused before anything changed.
public enum LoginBindingError: Error, Sendable, Equatable, CustomStringConvertible, ClassifiedError {
    /// No login role of that name exists on the server (logins are created by the administrator).
    case unknownLogin(String)
    /// Stations and the RMA bench need `--station`.
    case stationRequired(login: String, role: LoginRole)
    /// Auditors write nothing, so they are bound to no station.
    case stationNotAllowed(login: String, role: LoginRole)
    /// The login is not bound (nothing to revoke).
    case notBound(String)

    public var description: String {
        switch self {
        case .unknownLogin(let login):
            "there is no login \(login) on this server; create it first (CREATE ROLE \(login) LOGIN PASSWORD …)"
        case .stationRequired(let login, let role):
            "a \(role.rawValue) login writes as a station or bench: give \(login) one with --station NAME"
        case .stationNotAllowed(let login, let role):
            "an \(role.rawValue) login writes nothing, so \(login) takes no --station"
        case .notBound(let login):
            "login \(login) is not bound in this database; nothing to revoke"
        }
    }

    public var failureClass: FailureClass {
        switch self {
        case .unknownLogin, .stationRequired, .stationNotAllowed, .notBound: .badInput
        }
    }
}

extension RegistryDatabase {
    static let bindingColumns = "login, role, station, granted_by, granted_at"

    static func binding(_ row: PostgresRow) throws -> LoginBinding {
        LoginBinding(login: try row.decode("login"), role: try enumValue(row, "role"), station: try row.decode("station"),
                     grantedBy: try row.decode("granted_by"), grantedAt: try row.decode("granted_at"))
    }

    /// Binds `login` (an existing PostgreSQL login) to `role` and `station`, makes it a member of
    /// that role only (role memberships are cluster-wide), and records a `login.granted` event.
    /// Granting again replaces the binding. Needs the administrator (the schema owner with
    /// CREATEROLE, or a superuser).
    @discardableResult
    public func grantLogin(_ login: String, role: LoginRole, station: String?) async throws -> LoginBinding {
        if role.needsStation && (station ?? "").isEmpty { throw LoginBindingError.stationRequired(login: login, role: role) }
        if !role.needsStation && station != nil { throw LoginBindingError.stationNotAllowed(login: login, role: role) }
        return try await run("grant logins") { transaction in
            let quoted = try Self.quotedLogin(login, in: transaction)
            for other in LoginRole.allCases where other != role {
                try transaction.execute("REVOKE \(other.databaseRole) FROM \(quoted)")
            }
            try transaction.execute("GRANT \(role.databaseRole) TO \(quoted)")
            let row = try transaction.queryOne("""
                INSERT INTO station_logins (login, role, station) VALUES ($1, $2, $3)
                ON CONFLICT (login) DO UPDATE SET role = EXCLUDED.role, station = EXCLUDED.station,
                    granted_by = EXCLUDED.granted_by, granted_at = EXCLUDED.granted_at
                RETURNING \(Self.bindingColumns)
                """, [login, role.rawValue, station])
            var detail = ["login": login, "role": role.rawValue]
            detail["station"] = station
            try Self.appendEvent(kind: "login.granted", station: nil, productID: nil, deviceID: nil, jobID: nil,
                                 detail: detail, in: transaction)
            return try Self.binding(row!)
        }
    }

    /// Removes the binding of `login` and its membership in the keyline roles, and records a
    /// `login.revoked` event. Returns the binding that was removed.
    @discardableResult
    public func revokeLogin(_ login: String) async throws -> LoginBinding {
        try await run("revoke logins") { transaction in
            guard let row = try transaction.queryOne(
                "DELETE FROM station_logins WHERE login = $1 RETURNING \(Self.bindingColumns)", [login]) else {
                throw LoginBindingError.notBound(login)
            }
            // The login may have been dropped since it was bound: then only the binding goes.
            if let quoted = try? Self.quotedLogin(login, in: transaction) {
                for role in LoginRole.allCases {
                    try transaction.execute("REVOKE \(role.databaseRole) FROM \(quoted)")
                }
            }
            let removed = try Self.binding(row)
            var detail = ["login": login, "role": removed.role.rawValue]
            detail["station"] = removed.station
            try Self.appendEvent(kind: "login.revoked", station: nil, productID: nil, deviceID: nil, jobID: nil,
                                 detail: detail, in: transaction)
            return removed
        }
    }

    /// Refuses, before anything is touched, a session that the 0008 trigger would refuse at its
    /// first row as `station`: a login bound to another station, or a role member bound to none.
    /// Provision writes its job row first; restore and the bench commands write a device before
    /// their first row, and must not leave a device changed with nothing recorded.
    /// Trusted sessions (superuser, the schema owner's members) pass, as in the trigger.
    public func requireBoundStation(_ station: String, action: String) async throws {
        let rows = try await run("read the login's binding") { transaction in
            try transaction.query("""
                SELECT session_user::text AS login, keyline_session_trusted('events'::regclass) AS trusted,
                       (SELECT s.station FROM station_logins s WHERE s.login = session_user) AS bound,
                       EXISTS (SELECT 1 FROM station_logins s WHERE s.login = session_user) AS has_binding
                """)
        }
        guard let row = rows.first, try !row.decode("trusted", as: Bool.self) else { return }
        let login: String = try row.decode("login")
        let bound: String? = try row.decode("bound")
        if let bound, bound == station { return }
        let message = try row.decode("has_binding", as: Bool.self)
            ? "login \(login) is bound to station \(bound ?? "none (auditor)"); it cannot \(action) as station \(station)"
            : "login \(login) is not bound to a station or bench; it cannot \(action)"
        let hint = bound.map { "Run keyline with --station \($0), or have an administrator rebind the login (`keyline db grant`)." }
            ?? "An administrator runs `keyline db grant \(login) --role station|rma --station NAME`."
        throw RegistryError.permissionDenied(action: action, PostgresError(
            kind: .server, sqlState: "42501", message: message, hint: hint))
    }

    /// Every binding (by login), and the logins that are members of a keyline role without one.
    public func loginBindings() async throws -> (bound: [LoginBinding], unbound: [UnboundLogin]) {
        try await run("read station_logins") { transaction in
            let bound = try transaction.query("SELECT \(Self.bindingColumns) FROM station_logins ORDER BY login")
                .map(Self.binding)
            let unbound = try transaction.query("""
                SELECT m.rolname AS login, string_agg(r.rolname, ',' ORDER BY r.rolname) AS roles
                FROM pg_auth_members a
                JOIN pg_roles r ON r.oid = a.roleid
                JOIN pg_roles m ON m.oid = a.member
                WHERE r.rolname IN ('keyline_station', 'keyline_rma', 'keyline_auditor') AND m.rolcanlogin
                  AND NOT EXISTS (SELECT 1 FROM station_logins s WHERE s.login = m.rolname)
                GROUP BY m.rolname ORDER BY m.rolname
                """).map { row in
                UnboundLogin(login: try row.decode("login"),
                             roles: try row.decode("roles", as: String.self).split(separator: ",").map(String.init))
            }
            return (bound, unbound)
        }
    }

    /// The login's name quoted as an identifier by the server (GRANT takes no parameters).
    private static func quotedLogin(_ login: String, in transaction: PostgresTransaction) throws -> String {
        guard let row = try transaction.queryOne(
            "SELECT quote_ident(rolname) AS quoted FROM pg_roles WHERE rolname = $1 AND rolcanlogin", [login]) else {
            throw LoginBindingError.unknownLogin(login)
        }
        return try row.decode("quoted")
    }
}
