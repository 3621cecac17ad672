/// What the connected login may do beyond reading: for a read-only viewer (the dashboard) that
/// refuses to run as anything that could write.
public struct LoginAccess: Sendable, Equatable {
    public var user: String
    public var superuser: Bool
    public var bypassesRowSecurity: Bool
    /// keyline roles the login is a member of (directly or through another role).
    public var roles: [String]
    /// Tables of the registry's schema the login owns or may INSERT, UPDATE, DELETE or TRUNCATE.
    public var writableTables: [String]

    /// Only the auditor role, and no way to write anything.
    public var isAuditorOnly: Bool {
        !superuser && !bypassesRowSecurity && writableTables.isEmpty && roles == ["keyline_auditor"]
    }
}

extension RegistryDatabase {
    /// The connected login's roles and write rights over every table in `public` (the owner of
    /// a table, the migrating login, can write it, and shows here through `has_table_privilege`).
    public func loginAccess() async throws -> LoginAccess {
        try await run("read the login's privileges") { transaction in
            let role = try transaction.queryOne("""
                SELECT session_user::text AS name, r.rolsuper, r.rolbypassrls,
                       ARRAY(SELECT k.name FROM unnest(ARRAY['keyline_auditor', 'keyline_rma', 'keyline_station']) k(name)
                             WHERE EXISTS (SELECT 1 FROM pg_roles x WHERE x.rolname = k.name)
                               AND pg_has_role(session_user, k.name, 'MEMBER') ORDER BY 1)::text[] AS roles
                FROM pg_roles r WHERE r.rolname = session_user
                """)
            let writable = try transaction.query("""
                SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                  AND (pg_has_role(session_user, c.relowner, 'MEMBER')
                       OR has_table_privilege(session_user, c.oid, 'DELETE, TRUNCATE')
                       OR has_any_column_privilege(session_user, c.oid, 'INSERT, UPDATE'))
                ORDER BY 1
                """)
            return LoginAccess(user: try role?.decode("name") ?? "?", superuser: try role?.decode("rolsuper") ?? false,
                               bypassesRowSecurity: try role?.decode("rolbypassrls") ?? false,
                               roles: try role?.decode("roles", as: PostgresTextArray.self).elements.compactMap { $0 } ?? [],
                               writableTables: try writable.map { try $0.decode("name") })
        }
    }
}
