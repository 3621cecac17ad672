import Foundation
import ParticleCloud
import Registry

/// The line's side of the cloud outbox: while a job runs, a drainer sends the uploads its
/// registrations queue (at most `cloud.in_flight` at once, never holding up a device); at the
/// job's end it waits up to `cloud.drain_timeout` for the job's uploads and says what is left.
public struct LineCloudUploads: Sendable {
    public let drainer: CloudOutboxDrainer
    public let settings: CloudSettings

    /// The drainer for this pipeline, or nil when no upload can be sent from here: no `cloud:`
    /// section and no PARTICLE_ACCESS_TOKEN (uploads stay queued for `keyline cloud push`), or
    /// `cloud.upload: none`. With a `cloud:` section the token and API URL must be usable now,
    /// before any device is touched.
    public static func prepare(_ definition: PipelineDefinition, registry: RegistryDatabase,
                               environment: [String: String]) async throws -> LineCloudUploads? {
        let settings = definition.cloud
        guard settings.upload != .none else { return nil }
        let api = try ParticleAPIBase.resolve(pipeline: settings.apiURL, environment: environment)
        let token: ParticleAccessToken
        do {
            token = try await ParticleAccessToken.resolve(tokenFile: settings.tokenFile, environment: environment)
        } catch ParticleCloudError.noToken where !settings.configured {
            return nil
        }
        let drainer = CloudOutboxDrainer(registry: registry, client: ParticleCloudClient(api: api, token: token),
                                         station: definition.station, inFlight: settings.inFlight,
                                         joinProduct: settings.joinProduct)
        return LineCloudUploads(drainer: drainer, settings: settings)
    }

    /// Sends due uploads until `stop`; returns the token refusal that ended it early, if any
    /// (then nothing more is sent: one operator message, not one per device). Other failures
    /// (the cloud down, the registry briefly away) wait for the next pass.
    public func keepDraining(until stop: StopSignal, poll: Duration = .milliseconds(500)) async -> ParticleCloudError? {
        while !stop.isStopRequested {
            do {
                _ = try await drainer.drainDue()
            } catch let refusal as ParticleCloudError {
                if case .unauthorized = refusal { return refusal }
            } catch {
                // Retried on the next pass; the uploads stay pending under their lease.
            }
            if await stop.sleep(for: poll) { break }
        }
        return nil
    }

    /// What became of a job's uploads at its end.
    public struct JobOutcome: Sendable {
        public var counts: CloudUploadCounts
        public var parked: [CloudUpload]
        /// Why uploads are still pending (the token refused, the cloud unreachable), if they are.
        public var problem: ParticleCloudError?
        public var requireAccepted: Bool
    }

    /// Waits up to `cloud.drain_timeout` for the job's uploads, then reads where they stand.
    public func finish(jobID: Int64, refusal: ParticleCloudError?) async throws -> JobOutcome {
        var problem = refusal
        if refusal == nil {
            do {
                _ = try await drainer.drain(.init(jobID: jobID), until: .now + settings.drainTimeout)
            } catch let error as ParticleCloudError {
                problem = error
            }
        }
        let registry = drainer.registry
        return JobOutcome(counts: try await registry.cloudUploadCounts(jobID: jobID),
                          parked: try await registry.cloudUploads(state: .parked, jobID: jobID),
                          problem: problem, requireAccepted: settings.requireAccepted)
    }
}

extension LineCloudUploads.JobOutcome {
    /// The error that fails the job when the pipeline requires every upload accepted.
    public var failure: ParticleCloudError? {
        guard requireAccepted else { return nil }
        if let first = parked.first {
            return .parked(count: parked.count, firstDeviceID: first.deviceID, firstReason: first.reason ?? "refused")
        }
        guard counts.pending > 0 else { return nil }
        if case .unauthorized? = problem { return problem }
        return .stillPending(count: counts.pending, lastProblem: problem.map { "\($0)" })
    }
}
