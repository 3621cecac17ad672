import Foundation

/// The newest device seen on one port of a station's shown job (the dashboard's port tile).
public struct FloorDevice: Sendable, Equatable {
    public var jobID: Int64
    public var deviceID: String
    public var portPath: String?
    public var state: String
    public var lastGoodState: String?
    public var attempts: Int
    public var lastError: String?
    /// The step (ProvisioningStep's raw value) of the device's latest failed try, if any.
    public var failedStep: String?
    /// Its key's cloud upload: pending, sent or parked (nil: none queued).
    public var cloudState: String?
    public var updatedAt: Date
}

/// A device left alone because its port is outside the jig's allow-list (`port.not_permitted`).
public struct PortNotPermitted: Sendable, Equatable {
    public var station: String
    public var port: String
    public var deviceID: String?
    public var occurredAt: Date
}

/// Devices a station finished in a time window (a shift): done, done on their first run, failed.
public struct StationOutput: Sendable, Equatable {
    public var station: String
    public var done: Int
    public var firstPass: Int
    public var failed: Int
}

/// The cloud upload outbox at a glance.
public struct CloudBacklog: Sendable, Equatable {
    public var pending: Int
    /// Pending longer than the age asked for.
    public var overdue: Int
    public var parked: Int
}

/// A port whose last `count` finished devices all failed.
public struct PortFailureStreak: Sendable, Equatable {
    public var station: String
    public var port: String
    public var count: Int
}

/// The dashboard's reads: small, indexed queries over the latest rows, read-only.
extension RegistryDatabase {
    /// Each station's job to show: its running job, else its newest one started within `recent`.
    public func floorJobs(recent: TimeInterval = 86_400) async throws -> [Job] {
        try await run("read jobs") { transaction in
            try transaction.query("""
                SELECT DISTINCT ON (station) \(Self.jobColumns) FROM jobs
                WHERE status = 'running' OR started_at > now() - make_interval(secs => $1)
                ORDER BY station, (status = 'running') DESC, started_at DESC, id DESC
                """, [recent]).map(Self.job)
        }
    }

    /// The newest device on each port of each of `jobIDs`.
    public func floorDevices(jobIDs: [Int64]) async throws -> [FloorDevice] {
        guard !jobIDs.isEmpty else { return [] }
        let ids = "{" + jobIDs.map(String.init).joined(separator: ",") + "}"
        return try await run("read job_devices") { transaction in
            try transaction.query("""
                SELECT DISTINCT ON (d.job_id, coalesce(d.port_path, d.device_id))
                       d.job_id, d.device_id, d.port_path, d.state, d.last_good_state, d.attempts, d.last_error,
                       d.updated_at, f.step AS failed_step, c.state AS cloud_state
                FROM job_devices d
                LEFT JOIN LATERAL (SELECT s.step FROM job_device_steps s
                                   WHERE s.job_id = d.job_id AND s.device_id = d.device_id AND s.outcome = 'failed'
                                   ORDER BY s.id DESC LIMIT 1) f ON true
                LEFT JOIN LATERAL (SELECT u.state FROM cloud_uploads u
                                   WHERE u.job_id = d.job_id AND u.device_id = d.device_id
                                   ORDER BY u.id DESC LIMIT 1) c ON true
                WHERE d.job_id = ANY($1::bigint[]) AND d.abandoned_at IS NULL
                ORDER BY d.job_id, coalesce(d.port_path, d.device_id), d.updated_at DESC
                """, [ids]).map { row in
                FloorDevice(jobID: try row.decode("job_id"), deviceID: try row.decode("device_id"),
                            portPath: try row.decode("port_path"), state: try row.decode("state"),
                            lastGoodState: try row.decode("last_good_state"), attempts: try row.decode("attempts"),
                            lastError: try row.decode("last_error"), failedStep: try row.decode("failed_step"),
                            cloudState: try row.decode("cloud_state"), updatedAt: try row.decode("updated_at"))
            }
        }
    }

    /// The latest `port.not_permitted` event per station and port since `since`.
    public func portsNotPermitted(since: Date) async throws -> [PortNotPermitted] {
        try await run("read events") { transaction in
            try transaction.query("""
                SELECT DISTINCT ON (station, detail->>'port') station, detail->>'port' AS port, device_id, occurred_at
                FROM events
                WHERE kind = 'port.not_permitted' AND occurred_at >= $1 AND station IS NOT NULL AND detail ? 'port'
                ORDER BY station, detail->>'port', occurred_at DESC
                """, [since]).map { row in
                PortNotPermitted(station: try row.decode("station"), port: try row.decode("port"),
                                 deviceID: try row.decode("device_id"), occurredAt: try row.decode("occurred_at"))
            }
        }
    }

    /// Per station, the devices whose run ended in `[from, to)` (by their last state write):
    /// done, done on the first run (attempts = 1: first-pass yield), failed. Abandoned ones are left out.
    public func stationOutput(from: Date, to: Date) async throws -> [StationOutput] {
        try await run("read job_devices") { transaction in
            try transaction.query("""
                SELECT station, count(*) FILTER (WHERE state = 'done') AS done,
                       count(*) FILTER (WHERE state = 'done' AND attempts = 1) AS first_pass,
                       count(*) FILTER (WHERE state = 'failed') AS failed
                FROM job_devices
                WHERE updated_at >= $1 AND updated_at < $2 AND state IN ('done', 'failed') AND abandoned_at IS NULL
                GROUP BY station ORDER BY station
                """, [from, to]).map { row in
                StationOutput(station: try row.decode("station"), done: try row.decode("done"),
                              firstPass: try row.decode("first_pass"), failed: try row.decode("failed"))
            }
        }
    }

    /// Pending uploads (those pending longer than `overdueAfter` apart) and parked ones.
    public func cloudBacklog(overdueAfter: TimeInterval) async throws -> CloudBacklog {
        try await run("read cloud_uploads") { transaction in
            let row = try transaction.queryOne("""
                SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
                       count(*) FILTER (WHERE state = 'pending' AND queued_at < now() - make_interval(secs => $1)) AS overdue,
                       count(*) FILTER (WHERE state = 'parked') AS parked
                FROM cloud_uploads WHERE state IN ('pending', 'parked')
                """, [overdueAfter])
            return CloudBacklog(pending: try row?.decode("pending") ?? 0, overdue: try row?.decode("overdue") ?? 0,
                                parked: try row?.decode("parked") ?? 0)
        }
    }

    /// Ports whose last `count` devices that finished within `window` all failed.
    public func portFailureStreaks(count: Int, window: TimeInterval = 86_400) async throws -> [PortFailureStreak] {
        try await run("read job_devices") { transaction in
            try transaction.query("""
                SELECT station, port_path, count(*) AS n FROM (
                    SELECT station, port_path, state,
                           row_number() OVER (PARTITION BY station, port_path ORDER BY updated_at DESC) AS position
                    FROM job_devices
                    WHERE state IN ('done', 'failed') AND port_path IS NOT NULL AND abandoned_at IS NULL
                      AND updated_at > now() - make_interval(secs => $2)
                ) latest
                WHERE position <= $1
                GROUP BY station, port_path
                HAVING count(*) = $1 AND bool_and(state = 'failed')
                ORDER BY station, port_path
                """, [count, window]).map { row in
                PortFailureStreak(station: try row.decode("station"), port: try row.decode("port_path"),
                                  count: try row.decode("n"))
            }
        }
    }

    /// Events filtered by station, actor and time (all optional), newest first, at most `limit`.
    public func events(station: String?, actor: String?, from: Date?, to: Date?, limit: Int) async throws -> [AuditEvent] {
        try await run("read events") { transaction in
            try transaction.query("""
                SELECT \(Self.eventColumns) FROM events
                WHERE ($1::text IS NULL OR station = $1) AND ($2::text IS NULL OR actor = $2)
                  AND ($3::timestamptz IS NULL OR occurred_at >= $3) AND ($4::timestamptz IS NULL OR occurred_at < $4)
                ORDER BY id DESC LIMIT $5
                """, [station, actor, from, to, limit]).map(Self.event)
        }
    }

    /// Every product's ID, in order.
    public func productIDs() async throws -> [String] {
        try await run("read products") { transaction in
            try transaction.query("SELECT id FROM products ORDER BY id").map { try $0.decode("id") }
        }
    }

    /// The database's clock (the dashboard's shifts and ages are reckoned on it).
    public func databaseNow() async throws -> Date {
        try await run("read the clock") { transaction in
            try transaction.queryOne("SELECT now() AS now")!.decode("now")
        }
    }
}
