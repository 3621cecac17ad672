/// The right to run one job: a PostgreSQL session advisory lock held on a connection of its own
/// for as long as the run lasts. Two `keyline provision --resume J` on one job (a second terminal,
/// a second station) would otherwise interleave their escrow intents for the same devices. The
/// server drops the lock with the session, so a crashed or killed station never leaves it held.
public final class JobLease: Sendable {
    public let jobID: Int64
    private let connection: PostgresConnection

    /// The advisory lock's first key: "kl" + "jb", keeping job leases apart from other locks
    /// (the migration runner's among them).
    static let lockClass: Int32 = 0x6B6C_6A62

    private init(jobID: Int64, connection: PostgresConnection) {
        self.jobID = jobID
        self.connection = connection
    }

    /// Takes the lease, or returns nil when another session holds it.
    static func acquire(jobID: Int64, settings: ConnectionSettings) async throws -> JobLease? {
        let connection = try await PostgresConnection.connect(settings, label: "keyline.job-lease")
        // Job IDs are identity values, far below 2^31 on any real registry; larger ones wrap.
        let rows = try await connection.query("SELECT pg_try_advisory_lock($1::integer, $2::integer) AS locked",
                                              [lockClass, Int32(truncatingIfNeeded: jobID)])
        guard try rows.first?.decode("locked", as: Bool.self) == true else {
            await connection.close()
            return nil
        }
        return JobLease(jobID: jobID, connection: connection)
    }

    /// Gives the lease up: unlocked explicitly, so the next lease sees it free at once (a closed
    /// session's locks are dropped only once its server process has exited).
    public func release() async {
        _ = try? await connection.query("SELECT pg_advisory_unlock($1::integer, $2::integer)",
                                        [Self.lockClass, Int32(truncatingIfNeeded: jobID)])
        await connection.close()
    }
}

extension RegistryDatabase {
    /// Takes the lease on job `jobID` for this process, or nil when another process runs it.
    public func leaseJob(_ jobID: Int64) async throws -> JobLease? {
        let settings: ConnectionSettings
        if let pool = client as? PostgresConnectionPool {
            settings = pool.settings
        } else if let connection = client as? PostgresConnection {
            settings = connection.settings
        } else {
            throw RegistryError.database(PostgresError(
                kind: .invalidSettings, message: "a job lease needs the registry's connection settings (a connection or a pool)"))
        }
        do {
            return try await JobLease.acquire(jobID: jobID, settings: settings)
        } catch let error as PostgresError {
            throw RegistryError.database(error)
        }
    }
}
