import Foundation

/// A workflow step a device ran in a job, as the station records it when the step ends.
public struct StepRecord: Sendable, Hashable, Codable {
    public enum Outcome: String, Sendable, Hashable, Codable { case done, failed }

    public var jobID: Int64
    public var deviceID: String
    /// Provisioning's `ProvisioningStep` raw value (`flash`, `device_key` …).
    public var step: String
    public var startedAt: Date
    public var seconds: Double
    public var attempts: Int
    public var outcome: Outcome
    /// Why it failed (required when `outcome` is `.failed`).
    public var reason: String?
    public var portPath: String?
    public var station: String

    public init(jobID: Int64, deviceID: String, step: String, startedAt: Date, seconds: Double, attempts: Int,
                outcome: Outcome, reason: String? = nil, portPath: String? = nil, station: String) {
        self.jobID = jobID
        self.deviceID = deviceID
        self.step = step
        self.startedAt = startedAt
        self.seconds = seconds
        self.attempts = attempts
        self.outcome = outcome
        self.reason = reason
        self.portPath = portPath
        self.station = station
    }
}

extension RegistryDatabase {
    /// Appends the timing of one step (one INSERT in one transaction, presenting the run's lease).
    /// Recording the same try again changes nothing: a caller whose COMMIT was lost with the
    /// connection (a failover) retries, and the row may already be there (the standby has every
    /// acknowledged commit, and maybe this one), so a replay must not double the step.
    public func recordStep(_ record: StepRecord) async throws {
        try await run("record step timings") { transaction in
            _ = try transaction.execute("""
                INSERT INTO job_device_steps (job_id, device_id, step, started_at, seconds, attempts, outcome, reason,
                                              port_path, station)
                SELECT $1::bigint, $2::text, $3::text, $4::timestamptz, $5::double precision, $6::integer, $7::text,
                       $8::text, $9::text, $10::text
                WHERE NOT EXISTS (SELECT 1 FROM job_device_steps
                                  WHERE job_id = $1::bigint AND device_id = $2::text AND step = $3::text
                                    AND started_at = $4::timestamptz AND attempts = $6::integer AND outcome = $7::text)
                """, [record.jobID, record.deviceID, record.step, record.startedAt, max(0, record.seconds),
                      max(1, record.attempts), record.outcome.rawValue,
                      record.outcome == .failed ? (record.reason ?? "failed") : record.reason,
                      record.portPath, record.station])
        } mapping: { error in
            error.sqlState == "23503" ? .unknownJob(record.jobID) : nil
        }
    }

    /// Every step recorded for job `jobID`, per device in the order they started.
    public func steps(jobID: Int64) async throws -> [StepRecord] {
        try await run("read step timings") { transaction in
            try transaction.query("""
                SELECT job_id, device_id, step, started_at, seconds, attempts, outcome, reason, port_path, station
                FROM job_device_steps WHERE job_id = $1 ORDER BY device_id, started_at, id
                """, [jobID]).map { row in
                StepRecord(jobID: try row.decode(at: 0), deviceID: try row.decode(at: 1), step: try row.decode(at: 2),
                           startedAt: try row.decode(at: 3), seconds: try row.decode(at: 4), attempts: try row.decode(at: 5),
                           outcome: try Self.enumValue(row, "outcome"), reason: try row.decode(at: 7),
                           portPath: try row.decode(at: 8), station: try row.decode(at: 9))
            }
        }
    }
}
