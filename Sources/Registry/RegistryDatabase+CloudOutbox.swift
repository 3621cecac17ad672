import Foundation

/// One key the Particle cloud must learn (schema/0009_cloud_outbox.sql): queued in the transaction
/// that registers the key, then delivered by an outbox drainer (ParticleCloud).
public struct CloudUpload: Sendable, Hashable, Codable {
    public enum State: String, Sendable, Hashable, Codable, CaseIterable {
        /// Not yet accepted by the cloud (never tried, or a retryable failure).
        case pending
        /// The cloud answered 200: never sent again.
        case sent
        /// The cloud refused this upload for good (400/404, not a product member); `reason` says why.
        case parked
    }

    public let id: Int64
    public let registrationID: Int64
    public let productID: String
    public let deviceID: String
    public let fingerprint: String
    public let algorithm: RegisteredKeyAlgorithm
    public let jobID: Int64?
    public let state: State
    public let attempts: Int
    public let lastStatus: Int?
    public let lastRequestID: String?
    public let reason: String?
    public let nextAttemptAt: Date
    public let queuedAt: Date
    public let sentAt: Date?
}

/// A pending upload a drainer took, with the public key to send (the registration's SPKI DER).
public struct ClaimedCloudUpload: Sendable, Hashable {
    public let upload: CloudUpload
    public let spkiDER: [UInt8]
}

/// How many uploads are in each state (for `keyline cloud status` and the job report).
public struct CloudUploadCounts: Sendable, Hashable, Codable {
    public var pending = 0
    public var sent = 0
    public var parked = 0
    public init() {}
}

/// What one delivery attempt came to, as the drainer records it.
public enum CloudUploadOutcome: Sendable, Hashable {
    /// 200 from the cloud.
    case sent
    /// Try again no earlier than `after` (5xx, 429 with Retry-After, a timeout, no connection).
    case retry(after: Duration)
    /// The cloud refused this upload for good.
    case parked
    /// Not this upload's fault (401/403: the token): due again at once, nothing parked.
    case released
}

extension RegistryDatabase {
    static let cloudUploadColumns = "u.id, u.registration_id, u.product_id, u.device_id, u.fingerprint, u.algorithm, "
        + "u.job_id, u.state, u.attempts, u.last_status, u.last_request_id, u.reason, u.next_attempt_at, "
        + "u.queued_at, u.sent_at"

    static func cloudUpload(_ row: PostgresRow) throws -> CloudUpload {
        CloudUpload(id: try row.decode("id"), registrationID: try row.decode("registration_id"),
                    productID: try row.decode("product_id"), deviceID: try row.decode("device_id"),
                    fingerprint: try row.decode("fingerprint"), algorithm: try enumValue(row, "algorithm"),
                    jobID: try row.decode("job_id"), state: try enumValue(row, "state"),
                    attempts: try row.decode("attempts"), lastStatus: try row.decode("last_status"),
                    lastRequestID: try row.decode("last_request_id"), reason: try row.decode("reason"),
                    nextAttemptAt: try row.decode("next_attempt_at"), queuedAt: try row.decode("queued_at"),
                    sentAt: try row.decode("sent_at"))
    }

    /// Queues the upload of `registered` inside the transaction that registers it (a replay of the
    /// same key finds its row and queues nothing).
    static func queueCloudUpload(of registered: KeyRegistration, station: String,
                                 in transaction: PostgresTransaction) throws {
        // The row is the record (queued_by, queued_at); each delivery attempt is a `cloud.upload` event.
        _ = try transaction.execute("""
            INSERT INTO cloud_uploads (registration_id, product_id, device_id, fingerprint, algorithm, job_id)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
            """, [registered.id, registered.productID, registered.deviceID, registered.fingerprint,
                  registered.algorithm.rawValue, registered.jobID])
    }

    /// Queues the upload of an existing registration (`keys send` of a key registered earlier):
    /// a parked upload is queued again (the operator asked), a sent one is left as it is (never
    /// sent twice). Returns the upload as it now stands.
    public func queueCloudUpload(of registered: KeyRegistration, station: String) async throws -> CloudUpload {
        try await run("queue cloud uploads") { transaction in
            try Self.queueCloudUpload(of: registered, station: station, in: transaction)
            _ = try transaction.execute("""
                UPDATE cloud_uploads SET state = 'pending', next_attempt_at = now(), reason = NULL
                WHERE registration_id = $1 AND state = 'parked'
                """, [registered.id])
            return try Self.cloudUpload(transaction.queryOne(
                "SELECT \(Self.cloudUploadColumns) FROM cloud_uploads u WHERE u.registration_id = $1",
                [registered.id])!)
        }
    }

    /// Takes up to `limit` due pending uploads (oldest first) and moves each ahead by `lease`, so
    /// other drainers skip them while this one sends; counts the attempt. `ids` narrows the choice
    /// (the bench sends the one it just queued), `jobID` to one job's uploads.
    public func claimCloudUploads(limit: Int, lease: Duration, ids: [Int64]? = nil,
                                  jobID: Int64? = nil) async throws -> [ClaimedCloudUpload] {
        let leaseSeconds = Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
        let idList = ids.map { "{" + $0.map(String.init).joined(separator: ",") + "}" }
        return try await run("send cloud uploads") { transaction in
            // A key superseded or revoked while its upload waited is never sent: a compromised key
            // must not reach the cloud, and an old key must not land after the one that replaced it.
            // Only among the uploads this claim would take (the due index, LIMIT): a backlog of
            // thousands is not scanned on every claim.
            _ = try transaction.execute("""
                UPDATE cloud_uploads u SET state = 'parked',
                       reason = 'the key is no longer active (' || r.status || '): not sent to the cloud'
                FROM key_registrations r
                WHERE r.id = u.registration_id AND r.status <> 'active'
                  AND u.id IN (SELECT id FROM cloud_uploads
                               WHERE state = 'pending' AND next_attempt_at <= now()
                                 AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[])) AND ($2::bigint IS NULL OR job_id = $2)
                               ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                """, [idList, jobID, limit])
            return try transaction.query("""
                WITH due AS (
                    SELECT id FROM cloud_uploads
                    WHERE state = 'pending' AND next_attempt_at <= now()
                      AND EXISTS (SELECT 1 FROM key_registrations k WHERE k.id = registration_id AND k.status = 'active')
                      AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[]))
                      AND ($3::bigint IS NULL OR job_id = $3)
                    ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
                UPDATE cloud_uploads u SET attempts = u.attempts + 1,
                       next_attempt_at = now() + make_interval(secs => $4::float8)
                FROM due, key_registrations r
                WHERE u.id = due.id AND r.id = u.registration_id
                RETURNING \(Self.cloudUploadColumns), r.spki_der
                """, [limit, idList, jobID, leaseSeconds]).map {
                ClaimedCloudUpload(upload: try Self.cloudUpload($0), spkiDER: try $0.decode("spki_der"))
            }
        }
    }

    /// Records one attempt's outcome and its `cloud.upload` event (status code and request ID; no
    /// token, no key). A `sent` upload stays sent whatever a late duplicate reports.
    @discardableResult
    public func recordCloudUploadAttempt(_ upload: CloudUpload, outcome: CloudUploadOutcome, status: Int?,
                                         requestID: String?, reason: String?, station: String?) async throws -> CloudUpload? {
        let (state, delay): (String, Double) = switch outcome {
        case .sent: ("sent", 0)
        case .retry(let after): ("pending", Double(after.components.seconds) + Double(after.components.attoseconds) / 1e18)
        case .parked: ("parked", 0)
        case .released: ("pending", 0)
        }
        return try await run("record cloud uploads") { transaction in
            // The database writes the attempt's `cloud.upload` event itself (0013), naming this
            // station when the session is trusted and bound to none.
            try Self.nameStation(station, in: transaction)
            _ = try transaction.queryOne("SELECT set_config('keyline.cloud_attempt', 'on', true)", [])
            let row = try transaction.queryOne("""
                UPDATE cloud_uploads u SET state = $2::text, last_status = $3::integer, last_request_id = $4::text,
                       reason = CASE WHEN $2::text = 'sent' THEN NULL ELSE $5::text END,
                       sent_at = CASE WHEN $2::text = 'sent' THEN now() END,
                       next_attempt_at = now() + make_interval(secs => $6::float8)
                WHERE u.id = $1 AND u.state <> 'sent'
                RETURNING \(Self.cloudUploadColumns)
                """, [upload.id, state, status, requestID, reason, delay])
            if let row { return try Self.cloudUpload(row) }
            // Already sent (a late duplicate's report): the upload does not change, so no trigger
            // records the attempt; it is recorded here, as what it was.
            var detail = ["fingerprint": upload.fingerprint, "outcome": state == "pending" ? "retry" : state,
                          "attempt": String(upload.attempts), "note": "the upload was already sent"]
            if let status { detail["status"] = String(status) }
            if let requestID { detail["request_id"] = requestID }
            if let reason { detail["reason"] = reason }
            // The job goes in the detail, not the event's job column: any drainer (another
            // station's line, `cloud push`, the bench) may send a job's upload, and the database
            // lets a login write events only for its own station's jobs (0011).
            if let job = upload.jobID { detail["job"] = String(job) }
            try Self.appendEvent(kind: "cloud.upload", station: station, productID: upload.productID,
                                 deviceID: upload.deviceID, jobID: nil, detail: detail, in: transaction)
            return nil
        }
    }

    /// Names the station for the events the database writes in this transaction (0013's trigger).
    static func nameStation(_ station: String?, in transaction: PostgresTransaction) throws {
        guard let station else { return }
        _ = try transaction.queryOne("SELECT set_config('keyline.station', $1, true)", [station])
    }

    /// Uploads in a state (all when nil), of a job or a device, oldest first.
    public func cloudUploads(state: CloudUpload.State? = nil, jobID: Int64? = nil,
                             deviceID: String? = nil) async throws -> [CloudUpload] {
        try await run("read cloud uploads") { transaction in
            try transaction.query("""
                SELECT \(Self.cloudUploadColumns) FROM cloud_uploads u
                WHERE ($1::text IS NULL OR u.state = $1) AND ($2::bigint IS NULL OR u.job_id = $2)
                  AND ($3::text IS NULL OR u.device_id = $3)
                ORDER BY u.id
                """, [state?.rawValue, jobID, deviceID]).map(Self.cloudUpload)
        }
    }

    /// How many uploads are pending, sent and parked (of one job, or all).
    public func cloudUploadCounts(jobID: Int64? = nil) async throws -> CloudUploadCounts {
        try await run("read cloud uploads") { transaction in
            var counts = CloudUploadCounts()
            for row in try transaction.query("""
                SELECT state, count(*) AS n FROM cloud_uploads WHERE ($1::bigint IS NULL OR job_id = $1) GROUP BY state
                """, [jobID]) {
                let n: Int = try row.decode("n")
                switch try row.decode("state", as: String.self) {
                case "pending": counts.pending = n
                case "sent": counts.sent = n
                default: counts.parked = n
                }
            }
            return counts
        }
    }

    /// When the earliest pending upload (of `ids`, or all) is next due, or nil when none is pending.
    public func nextCloudUploadDue(ids: [Int64]? = nil, jobID: Int64? = nil) async throws -> Date? {
        let idList = ids.map { "{" + $0.map(String.init).joined(separator: ",") + "}" }
        return try await run("read cloud uploads") { transaction in
            guard let row = try transaction.queryOne("""
                SELECT min(next_attempt_at) AS due FROM cloud_uploads
                WHERE state = 'pending' AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))
                  AND ($2::bigint IS NULL OR job_id = $2)
                """, [idList, jobID]) else { return nil }
            return try row.decode("due", as: Date?.self)
        }
    }

    /// Parked uploads queued again (`keyline cloud push --retry-parked`, after the operator fixed
    /// the cause, e.g. added the device to the product). Returns how many.
    public func requeueParkedCloudUploads(deviceIDs: [String]? = nil) async throws -> Int {
        let idList = deviceIDs.map { "{" + $0.joined(separator: ",") + "}" }
        return try await run("queue cloud uploads") { transaction in
            try transaction.execute("""
                UPDATE cloud_uploads SET state = 'pending', next_attempt_at = now(), reason = NULL
                WHERE state = 'parked' AND ($1::text[] IS NULL OR device_id = ANY($1::text[]))
                """, [idList])
        }
    }
}
