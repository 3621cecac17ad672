import Foundation

extension RegistryAudit {
    /// The cloud's view of the registered keys (issue 20): an active key whose upload the cloud
    /// refused (parked) is an error, since that device cannot connect; one still pending after
    /// `pendingAge` is a warning (the line ran offline and nobody pushed). Keys queued for no
    /// upload (a pipeline's `cloud.upload: none`, keys registered before the outbox existed) are
    /// not judged here: the registry cannot know what the cloud holds for them.
    public func forEachCloudFinding(pendingAge: Duration, _ body: (AuditFinding) async throws -> Void) async throws {
        let seconds = Double(pendingAge.components.seconds)
        try await snapshot.forEachBatch("""
            SELECT u.product_id, u.device_id, u.fingerprint, u.job_id, u.state, u.attempts, u.last_status, u.reason,
                   to_char(u.queued_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS queued
            FROM cloud_uploads u JOIN key_registrations r ON r.id = u.registration_id
            WHERE r.status = 'active' AND u.state <> 'sent'
              AND (u.state = 'parked' OR u.queued_at < now() - make_interval(secs => $4::float8))
              AND ($1::text IS NULL OR r.product_id = $1) AND ($2::timestamptz IS NULL OR r.registered_at >= $2)
              AND ($3::bigint IS NULL OR r.job_id = $3)
            ORDER BY u.id
            """, [scope.productID, scope.since, scope.jobID, seconds], batchSize: batchSize) { rows in
            for row in rows {
                let (product, device, fingerprint): (String, String, String) =
                    (try row.decode(at: 0), try row.decode(at: 1), try row.decode(at: 2))
                let jobID: Int64? = try row.decode(at: 3)
                let state: String = try row.decode(at: 4)
                let attempts: Int = try row.decode(at: 5)
                let status: Int? = try row.decode(at: 6)
                let reason: String? = try row.decode(at: 7)
                let queued: String = try row.decode(at: 8)
                if state == "parked" {
                    try await body(AuditFinding(
                        .error, "cloud_upload_parked", productID: product, deviceID: device, fingerprint: fingerprint,
                        jobID: jobID,
                        message: "the Particle cloud refused key \(fingerprint) of device \(device)"
                            + (status.map { " (HTTP \($0))" } ?? "") + ": \(reason ?? "no reason given"); the device "
                            + "cannot connect. Fix the cause, then `keyline cloud push --retry-parked`"))
                } else {
                    try await body(AuditFinding(
                        .warning, "cloud_upload_pending", productID: product, deviceID: device, fingerprint: fingerprint,
                        jobID: jobID,
                        message: "key \(fingerprint) of device \(device) was registered (queued \(queued)) but the Particle "
                            + "cloud has not accepted it after \(attempts) attempt\(attempts == 1 ? "" : "s")"
                            + (reason.map { " (last: \($0))" } ?? "") + "; run `keyline cloud push`"))
                }
            }
        }
    }
}
