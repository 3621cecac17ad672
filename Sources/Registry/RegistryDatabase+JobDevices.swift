import Foundation

/// Per-device workflow state in a job (design.md, "What makes resume possible"). Every move names
/// the state it expects and changes the row only if it is still there (`UPDATE … WHERE state =
/// expected`), so a lost race or a replayed step is a `RegistryError.stateConflict`, never a silent
/// overwrite. The database's trigger refuses any move that is not one step forward, to `failed`, or
/// from `failed` back to the last good state, whoever sends it.
extension RegistryDatabase {
    /// First sighting of a device in a job: inserts it as `detected`, or returns the row already
    /// there (a resume, or another task that saw it first) unchanged.
    public func startJobDevice(jobID: Int64, deviceID: String, platform: String, station: String,
                               portPath: String?) async throws -> JobDevice {
        try await run("record job devices") { transaction in
            if let row = try transaction.queryOne("""
                INSERT INTO job_devices (job_id, device_id, state, attempts, port_path, platform, station)
                VALUES ($1, $2, 'detected', 1, $3, $4, $5)
                ON CONFLICT (job_id, device_id) DO NOTHING
                RETURNING \(Self.jobDeviceColumns)
                """, [jobID, deviceID, portPath, platform, station]) {
                return try Self.jobDevice(row)
            }
            // Read committed: this statement sees the conflicting row once its insert committed.
            return try Self.lockedJobDevice(jobID: jobID, deviceID: deviceID, in: transaction)!
        } mapping: { error in
            error.sqlState == "23503" ? .unknownJob(jobID) : nil
        }
    }

    /// Moves the device from `from` to `to` (one step forward). `keyFingerprint` is required to
    /// reach `key_ready` (the SHA-256 of the SPKI DER of the key read back from the device) and
    /// is kept from then on; naming another one later is refused. `portPath` is kept when nil.
    @discardableResult
    public func advanceJobDevice(jobID: Int64, deviceID: String, from: String, to: String,
                                 keyFingerprint: String? = nil, portPath: String? = nil) async throws -> JobDevice {
        if to == "key_ready" && keyFingerprint == nil {
            throw RegistryError.keyFingerprintRequired(jobID: jobID, deviceID: deviceID)
        }
        return try await run("record job devices") { transaction in
            let current = try Self.expectState(from, jobID: jobID, deviceID: deviceID, in: transaction)
            if let keyFingerprint, let recorded = current.keyFingerprint, recorded != keyFingerprint {
                throw RegistryError.keyFingerprintMismatch(jobID: jobID, deviceID: deviceID, recorded: recorded,
                                                           attempted: keyFingerprint)
            }
            guard let row = try transaction.queryOne("""
                UPDATE job_devices SET state = $4, key_fingerprint = COALESCE($5, key_fingerprint),
                    port_path = COALESCE($6, port_path), updated_at = now()
                WHERE job_id = $1 AND device_id = $2 AND state = $3
                RETURNING \(Self.jobDeviceColumns)
                """, [jobID, deviceID, from, to, keyFingerprint, portPath]) else {
                throw RegistryError.stateConflict(jobID: jobID, deviceID: deviceID, expected: from, actual: nil)
            }
            return try Self.jobDevice(row)
        } mapping: { error in
            Self.transitionError(error, jobID: jobID, deviceID: deviceID, from: from, to: to)
        }
    }

    /// Marks the device failed from `from`; the database keeps `from` as its last good state.
    @discardableResult
    public func failJobDevice(jobID: Int64, deviceID: String, from: String, reason: String) async throws -> JobDevice {
        try await run("record job devices") { transaction in
            _ = try Self.expectState(from, jobID: jobID, deviceID: deviceID, in: transaction)
            guard let row = try transaction.queryOne("""
                UPDATE job_devices SET state = 'failed', last_error = $4, updated_at = now()
                WHERE job_id = $1 AND device_id = $2 AND state = $3
                RETURNING \(Self.jobDeviceColumns)
                """, [jobID, deviceID, from, reason]) else {
                throw RegistryError.stateConflict(jobID: jobID, deviceID: deviceID, expected: from, actual: nil)
            }
            return try Self.jobDevice(row)
        } mapping: { error in
            Self.transitionError(error, jobID: jobID, deviceID: deviceID, from: from, to: "failed")
        }
    }

    /// Moves a failed device back to its last good state and counts a new attempt. A device that
    /// is not failed is returned unchanged (resuming twice is harmless).
    @discardableResult
    public func resumeJobDevice(jobID: Int64, deviceID: String) async throws -> JobDevice {
        try await run("record job devices") { transaction in
            guard let current = try Self.lockedJobDevice(jobID: jobID, deviceID: deviceID, in: transaction) else {
                throw RegistryError.stateConflict(jobID: jobID, deviceID: deviceID, expected: "failed", actual: nil)
            }
            guard current.state == "failed" else { return current }
            let row = try transaction.queryOne("""
                UPDATE job_devices SET state = last_good_state, attempts = attempts + 1, updated_at = now()
                WHERE job_id = $1 AND device_id = $2 AND state = 'failed'
                RETURNING \(Self.jobDeviceColumns)
                """, [jobID, deviceID])
            return try Self.jobDevice(row!)
        }
    }

    public func jobDevice(jobID: Int64, deviceID: String) async throws -> JobDevice? {
        try await run("read job devices") { transaction in
            try transaction.queryOne("SELECT \(Self.jobDeviceColumns) FROM job_devices WHERE job_id = $1 AND device_id = $2",
                                     [jobID, deviceID]).map(Self.jobDevice)
        }
    }

    public func jobDevices(jobID: Int64) async throws -> [JobDevice] {
        try await run("read job devices") { transaction in
            try transaction.query("SELECT \(Self.jobDeviceColumns) FROM job_devices WHERE job_id = $1 ORDER BY device_id",
                                  [jobID]).map(Self.jobDevice)
        }
    }

    /// Every job's record of a device, oldest first (what happened to it before, on any station).
    public func deviceRecords(deviceID: String) async throws -> [JobDevice] {
        try await run("read job devices") { transaction in
            try transaction.query("""
                SELECT \(Self.jobDeviceColumns) FROM job_devices WHERE device_id = $1 ORDER BY created_at, job_id
                """, [deviceID]).map(Self.jobDevice)
        }
    }

    // MARK: Helpers

    /// The row, locked until the transaction ends, so the checks below and the update agree.
    static func lockedJobDevice(jobID: Int64, deviceID: String, in transaction: PostgresTransaction) throws -> JobDevice? {
        try transaction.queryOne("""
            SELECT \(jobDeviceColumns) FROM job_devices WHERE job_id = $1 AND device_id = $2 FOR UPDATE
            """, [jobID, deviceID]).map(jobDevice)
    }

    /// The locked row if it is in `expected`; otherwise the conflict naming the state found.
    static func expectState(_ expected: String, jobID: Int64, deviceID: String,
                            in transaction: PostgresTransaction) throws -> JobDevice {
        let current = try lockedJobDevice(jobID: jobID, deviceID: deviceID, in: transaction)
        guard let current, current.state == expected else {
            throw RegistryError.stateConflict(jobID: jobID, deviceID: deviceID, expected: expected, actual: current?.state)
        }
        return current
    }

    static func transitionError(_ error: PostgresError, jobID: Int64, deviceID: String, from: String,
                                to: String) -> RegistryError? {
        switch error.constraint {
        case "job_devices_forward_only"?:
            .invalidTransition(jobID: jobID, deviceID: deviceID, from: from, to: to)
        case "job_devices_key_ready_has_fingerprint"?:
            .keyFingerprintRequired(jobID: jobID, deviceID: deviceID)
        default:
            nil
        }
    }
}
