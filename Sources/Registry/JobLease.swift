import FailurePolicy

/// The right to run one job: a PostgreSQL session advisory lock held on a connection of its own
/// for as long as the run lasts, and a lease epoch the registry fences every state write with.
/// Two `keyline provision --resume J` on one job (a second terminal, a second station) would
/// otherwise interleave their escrow intents for the same devices. The server drops the lock with
/// the session, so a crashed or killed station never leaves it held — and a database restart drops
/// it too, under a run that does not notice: taking the lease therefore bumps the job's
/// `lease_epoch` (the database allows that only to the session holding the lock), and every write
/// of a run presents its epoch (`RegistryDatabase.fenced(by:)`), so the run that lost the lease
/// has its next write refused (`JobLeaseError.lost`) instead of driving the job alongside the new one.
public final class JobLease: Sendable {
    public let jobID: Int64
    /// The lease's epoch: one more than the last run's (schema 0010, `jobs.lease_epoch`).
    public let epoch: Int64
    private let connection: PostgresConnection

    /// The advisory lock's first key: "kl" + "jb", keeping job leases apart from other locks
    /// (the migration runner's among them). The schema's fence trigger names the same value.
    static let lockClass: Int32 = 0x6B6C_6A62

    private init(jobID: Int64, epoch: Int64, connection: PostgresConnection) {
        self.jobID = jobID
        self.epoch = epoch
        self.connection = connection
    }

    /// What a fenced registry presents in each transaction.
    public var fence: JobLeaseFence { JobLeaseFence(jobID: jobID, epoch: epoch) }

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
        do {
            // On the locking session: the database checks it holds the lock.
            let bumped = try await connection.query(
                "UPDATE jobs SET lease_epoch = COALESCE(lease_epoch, 0) + 1 WHERE id = $1 RETURNING lease_epoch", [jobID])
            guard let epoch = try bumped.first?.decode("lease_epoch", as: Int64.self) else {
                throw RegistryError.unknownJob(jobID)
            }
            return JobLease(jobID: jobID, epoch: epoch, connection: connection)
        } catch {
            await connection.close()
            throw error
        }
    }

    /// What `confirm()` found.
    public enum Standing: Sendable, Equatable {
        /// The lease's session still holds the lock.
        case held
        /// The session that held the lock was gone (a database restart, a failover to the standby:
        /// the lock lived only in the old server's memory, while the epoch was replicated with the
        /// job's row); the lock was taken again on a new session, and the epoch is still this run's.
        case retaken
    }

    /// Checks that this run still holds the lease, re-taking the lock when its session was lost.
    ///
    /// Without this, a run whose registry failed over or restarted goes on writing with a valid
    /// epoch while no session holds the job's lock, so a second `--resume` takes the job over while
    /// this run is still driving its devices. Re-taking keeps the epoch (this run's writes present
    /// it): the lock first, then the epoch is read under it, since only the lock holder may bump
    /// it. Throws `JobLeaseError.lost` when another session holds the lock or the epoch moved on
    /// (another run took the job meanwhile); a `PostgresError` when the registry is away (try again).
    public func confirm() async throws -> Standing {
        let (jobID, epoch, key) = (self.jobID, self.epoch, Int32(truncatingIfNeeded: self.jobID))
        // Advisory locks on two int4 keys: classid = the first, objid = the second (as unsigned), objsubid = 2.
        let held = try await connection.query("""
            SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                           WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted
                             AND l.classid = $1::integer::oid AND l.objsubid = 2
                             AND l.objid::text::bigint = ($2::bigint & 4294967295)) AS held
            """, [Self.lockClass, jobID])
        if try held.first?.decode("held", as: Bool.self) == true { return .held }
        let locked = try await connection.query("SELECT pg_try_advisory_lock($1::integer, $2::integer) AS locked",
                                                [Self.lockClass, key])
        guard try locked.first?.decode("locked", as: Bool.self) == true else {
            throw JobLeaseError.lost(jobID: jobID, epoch: epoch)
        }
        let current = try await connection.query("SELECT lease_epoch FROM jobs WHERE id = $1", [jobID])
        guard try current.first?.decode("lease_epoch", as: Int64?.self) == epoch else {
            _ = try? await connection.query("SELECT pg_advisory_unlock($1::integer, $2::integer)", [Self.lockClass, key])
            throw JobLeaseError.lost(jobID: jobID, epoch: epoch)
        }
        return .retaken
    }

    /// Gives the lease up: unlocked explicitly, so the next lease sees it free at once (a closed
    /// session's locks are dropped only once its server process has exited).
    public func release() async {
        _ = try? await connection.query("SELECT pg_advisory_unlock($1::integer, $2::integer)",
                                        [Self.lockClass, Int32(truncatingIfNeeded: jobID)])
        await connection.close()
    }
}

/// A job lease as each fenced transaction presents it: the transaction-local setting
/// `keyline.job_lease = '<job>:<epoch>'`, which the schema's fence triggers compare with the job's
/// current epoch.
public struct JobLeaseFence: Sendable, Hashable {
    public let jobID: Int64
    public let epoch: Int64

    public init(jobID: Int64, epoch: Int64) {
        self.jobID = jobID
        self.epoch = epoch
    }

    func present(in transaction: PostgresTransaction) throws {
        _ = try transaction.query("SELECT set_config('keyline.job_lease', $1, true)", ["\(jobID):\(epoch)"])
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
            if error.isInsufficientPrivilege { throw RegistryError.permissionDenied(action: "lease jobs", error) }
            throw RegistryError.database(error)
        }
    }
}

/// The job's lease was taken by another run: this run must stop (its writes are refused).
public enum JobLeaseError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    case lost(jobID: Int64, epoch: Int64?)

    /// The fence's refusal (constraint `job_lease_fence`), named for the lease this registry held.
    init?(_ error: PostgresError, fence: JobLeaseFence?) {
        guard error.constraint == "job_lease_fence" else { return nil }
        // The refusal's DETAIL is the job's ID (schema 0010), for a registry that presented no lease.
        self = .lost(jobID: fence?.jobID ?? error.detail.flatMap { Int64($0) } ?? 0, epoch: fence?.epoch)
    }

    public var description: String {
        switch self {
        case .lost(let job, let epoch):
            "job \(job) was taken over by another keyline run"
                + (epoch.map { " (this run held lease \($0))" } ?? "")
                + ": the registry refuses this run's writes, so it stopped. Let the other run finish; "
                + "`keyline report \(job)` shows where the job stands"
        }
    }

    /// Nothing a wait or a retry fixes: the run stops, and no device is held for it.
    public var failureClass: FailureClass { .badInput }
}

extension RegistryDatabase {
    /// Throws `JobLeaseError.lost` unless the job's current lease is the one this registry
    /// presents (a run checks before it reports its end).
    public func requireLease() async throws {
        guard let fence else { return }
        let current = try await run("read jobs") { transaction in
            try transaction.queryOne("SELECT lease_epoch FROM jobs WHERE id = $1", [fence.jobID])?
                .decode("lease_epoch", as: Int64?.self)
        }
        if current != fence.epoch { throw JobLeaseError.lost(jobID: fence.jobID, epoch: fence.epoch) }
    }
}
