import Registry

extension KeyAudit {
    /// The registry-only audit (no store check, no decryption) in a read-only snapshot on a
    /// connection the caller holds: the dashboard's, borrowed from its shared pool, rather than
    /// a new connection per request.
    public static func runRegistryOnly(on connection: PostgresConnection, scope: AuditScope,
                                       output: some AuditOutput & Sendable) async throws -> Int {
        do {
            return try await connection.withReadOnlySnapshot { snapshot in
                _ = try await snapshot.query("SET LOCAL jit = off")
                return try await run(RegistryAudit(snapshot: snapshot, scope: scope), store: nil, decrypt: nil, output: output)
            }
        } catch let error as PostgresError {
            if error.isInsufficientPrivilege { throw RegistryError.permissionDenied(action: "audit the registry", error) }
            throw RegistryError.database(error)
        }
    }
}
