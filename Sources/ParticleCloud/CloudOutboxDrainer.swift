import Foundation
import Registry

/// Sends the cloud outbox's pending uploads (schema/0009_cloud_outbox.sql) with at most
/// `inFlight` requests at once, and records every attempt. The failure policy (issue 20):
/// - 2xx: sent, never sent again.
/// - 5xx, 408, 429, a timeout, no connection (retryable): due again after the cloud's Retry-After,
///   else an exponential back-off from the upload's attempt count.
/// - 401/403 (needs operator): this upload is released unparked and no further upload is started;
///   the drain ends with one `ParticleCloudError.unauthorized` (a bad token does not burn a tray).
/// - 400, 404, any other 4xx, a device the product does not accept (bad input): parked with the
///   cloud's reason.
/// A crash between the cloud's 200 and its record leaves the upload pending under a lease; it is
/// sent again once the lease ends, which the cloud takes as the same key again.
public struct CloudOutboxDrainer: Sendable {
    public let registry: RegistryDatabase
    public let client: ParticleCloudClient
    /// Recorded on `cloud.upload` events (nil: the login's bound station, if any).
    public let station: String?
    public var inFlight: Int
    /// Add each device to its product (`POST /v1/products/{id}/devices`) before its key.
    public var joinProduct: Bool
    /// How long a taken upload is kept from other drainers (longer than a request can take).
    public var lease: Duration
    public var initialBackoff: Duration
    public var maxBackoff: Duration

    public init(registry: RegistryDatabase, client: ParticleCloudClient, station: String?, inFlight: Int = 8,
                joinProduct: Bool = true, lease: Duration = .seconds(90), initialBackoff: Duration = .seconds(2),
                maxBackoff: Duration = .seconds(300)) {
        self.registry = registry
        self.client = client
        self.station = station
        self.inFlight = max(1, inFlight)
        self.joinProduct = joinProduct
        self.lease = lease
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
    }

    /// Which uploads a drain takes: all, one job's, or the ones named.
    public struct Scope: Sendable, Hashable {
        public var ids: [Int64]?
        public var jobID: Int64?
        public init(ids: [Int64]? = nil, jobID: Int64? = nil) {
            self.ids = ids
            self.jobID = jobID
        }
        public static let all = Scope()
    }

    /// What a drain did.
    public struct Tally: Sendable, Hashable {
        public var sent = 0
        public var retried = 0
        public var parked: [CloudUpload] = []
        /// The last retryable problem (for the message when uploads stay pending).
        public var lastProblem: String?
        public init() {}
    }

    /// Sends every upload of `scope` that is due now, once; returns when none is due or running.
    /// Throws `.unauthorized` (after recording) when the cloud refused the token.
    public func drainDue(_ scope: Scope = .all) async throws -> Tally {
        var tally = Tally()
        var refusal: ParticleCloudError?
        try await withThrowingTaskGroup(of: AttemptRecord.self) { group in
            var running = 0
            var exhausted = false
            while true {
                if !exhausted, refusal == nil, running < inFlight {
                    let claimed = try await registry.claimCloudUploads(limit: inFlight - running, lease: lease,
                                                                       ids: scope.ids, jobID: scope.jobID)
                    if claimed.isEmpty { exhausted = true }
                    for upload in claimed {
                        running += 1
                        group.addTask { try await deliver(upload) }
                    }
                    if !claimed.isEmpty { continue }
                }
                guard running > 0, let record = try await group.next() else { break }
                running -= 1
                // A slot freed: look for newly due uploads again (the line keeps queuing).
                exhausted = false
                switch record.outcome {
                case .sent: tally.sent += 1
                case .retry: tally.retried += 1; tally.lastProblem = record.problem
                case .parked: if let upload = record.recorded { tally.parked.append(upload) }
                case .released: refusal = refusal ?? record.refusal
                }
            }
        }
        if let refusal { throw refusal }
        return tally
    }

    /// Drains `scope` until nothing of it is pending, waiting for retries, or until `deadline`:
    /// then `.stillPending` names how many remain. Parked uploads are in the tally, not an error.
    public func drain(_ scope: Scope = .all, until deadline: ContinuousClock.Instant) async throws -> Tally {
        var total = Tally()
        while true {
            let pass = try await drainDue(scope)
            total.sent += pass.sent
            total.retried += pass.retried
            total.parked += pass.parked
            total.lastProblem = pass.lastProblem ?? total.lastProblem
            guard let due = try await registry.nextCloudUploadDue(ids: scope.ids, jobID: scope.jobID) else { return total }
            let wait = Duration.seconds(max(0, due.timeIntervalSinceNow))
            let now = ContinuousClock.now
            guard now + wait <= deadline else {
                let pending = try await registry.cloudUploads(state: .pending, jobID: scope.jobID)
                    .filter { scope.ids?.contains($0.id) ?? true }.count
                throw ParticleCloudError.stillPending(count: pending, lastProblem: total.lastProblem)
            }
            if wait > .zero { try await Task.sleep(for: wait) }
        }
    }

    struct AttemptRecord: Sendable {
        var outcome: CloudUploadOutcome
        var recorded: CloudUpload?
        var problem: String?
        var refusal: ParticleCloudError?
    }

    /// One upload: membership (when asked), then the key; the attempt recorded with its event.
    func deliver(_ claimed: ClaimedCloudUpload) async throws -> AttemptRecord {
        let upload = claimed.upload
        var attempt: CloudAttempt
        if joinProduct {
            attempt = await client.addToProduct(upload.productID, deviceID: upload.deviceID)
            if case .reply(let reply) = attempt, (200..<300).contains(reply.status) {
                switch reply.membership(of: upload.deviceID) {
                case (true, _)?:
                    attempt = await send(claimed)
                case (false, let list)?:
                    return try await record(upload, .parked, reply: reply,
                                            reason: "device \(upload.deviceID) is not accepted into product \(upload.productID)"
                                                + (list.map { " (the cloud lists it in \($0))" } ?? ""))
                case nil:
                    return try await record(upload, .parked, reply: reply,
                                            reason: "the cloud's product membership reply lists no devices")
                }
            }
        } else {
            attempt = await send(claimed)
        }
        switch attempt {
        case .cancelled:
            throw CancellationError()  // the lease makes it due again
        case .noReply(let problem):
            return try await record(upload, .retry(after: backoff(after: upload.attempts)), reply: nil, reason: problem)
        case .reply(let reply):
            switch CloudVerdict.of(reply) {
            case .accepted:
                return try await record(upload, .sent, reply: reply, reason: nil)
            case .retry(let after, let problem):
                return try await record(upload, .retry(after: after ?? backoff(after: upload.attempts)), reply: reply,
                                        reason: problem)
            case .park(let reason):
                return try await record(upload, .parked, reply: reply, reason: reason)
            case .stopAll:
                var result = try await record(upload, .released, reply: reply, reason: "token refused: \(reply.reason)")
                let (code, text) = reply.error
                result.refusal = .unauthorized(status: reply.status, code: code, description: text,
                                               requestID: reply.requestID, deviceID: upload.deviceID)
                return result
            }
        }
    }

    func send(_ claimed: ClaimedCloudUpload) async -> CloudAttempt {
        let upload = claimed.upload
        return await client.sendPublicKey(deviceID: upload.deviceID, spkiDER: claimed.spkiDER, algorithm: upload.algorithm,
                                          productID: upload.productID,
                                          order: "keyline_\(Int64(Date().timeIntervalSince1970 * 1000))_\(upload.id)")
    }

    func record(_ upload: CloudUpload, _ outcome: CloudUploadOutcome, reply: CloudReply?,
                reason: String?) async throws -> AttemptRecord {
        let recorded = try await registry.recordCloudUploadAttempt(upload, outcome: outcome, status: reply?.status,
                                                                   requestID: reply?.requestID, reason: reason,
                                                                   station: station)
        return AttemptRecord(outcome: outcome, recorded: recorded, problem: reason)
    }

    /// Doubling from `initialBackoff` per attempt already made, capped, with jitter (a tray of
    /// devices that failed together does not retry in lockstep).
    func backoff(after attempts: Int) -> Duration {
        var delay = initialBackoff
        var n = 1
        while n < attempts, delay < maxBackoff {
            delay = delay * 2
            n += 1
        }
        return min(delay, maxBackoff) * Double.random(in: 0.5...1.0)
    }
}
