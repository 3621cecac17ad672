import Foundation
import ParticleCloud
import Registry

/// The bench's cloud upload, as particle-cli's `keys send` and `keys doctor` make it: the key's
/// upload is queued with its registration (BenchKeyRegistration), then sent at once through the
/// outbox, so a failure leaves it queued for `keyline cloud push` and a key the cloud accepted
/// is never sent twice.
public enum BenchCloudUpload {
    public enum Result: Sendable, Hashable {
        /// The cloud accepted the key now (its request ID).
        case sent(requestID: String?)
        /// The cloud had accepted this key before: not sent again.
        case alreadySent
        /// Not sent from here (no PARTICLE_ACCESS_TOKEN): queued for `keyline cloud push`.
        case queued
    }

    /// How long the bench waits for a retryable cloud (5xx, 429) before leaving the key queued.
    public static let patience: Duration = .seconds(60)

    /// Sends the upload of `registered` now. Throws `ParticleCloudError` (token refused, parked,
    /// still pending) with the key registered and its upload kept.
    public static func send(_ registered: KeyRegistration, registry: RegistryDatabase, station: String,
                            environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> Result {
        let upload = try await registry.queueCloudUpload(of: registered, station: station)
        if upload.state == .sent { return .alreadySent }
        let token: ParticleAccessToken
        do {
            token = try await ParticleAccessToken.resolve(tokenFile: nil, environment: environment)
        } catch ParticleCloudError.noToken {
            return .queued
        }
        let drainer = CloudOutboxDrainer(registry: registry,
                                         client: ParticleCloudClient(api: try ParticleAPIBase.resolve(pipeline: nil, environment: environment),
                                                                     token: token),
                                         station: station, inFlight: 1)
        let tally = try await drainer.drain(.init(ids: [upload.id]), until: .now + patience)
        if let parked = tally.parked.first {
            throw ParticleCloudError.parked(count: 1, firstDeviceID: parked.deviceID, firstReason: parked.reason ?? "refused")
        }
        let now = try await registry.cloudUploads(deviceID: registered.deviceID).first { $0.id == upload.id }
        return .sent(requestID: now?.lastRequestID)
    }
}

extension BenchCloudUpload.Result {
    /// One line for the bench's output.
    public var summary: String {
        switch self {
        case .sent(let requestID): "uploaded to the Particle cloud" + (requestID.map { " (request \($0))" } ?? "")
        case .alreadySent: "the Particle cloud already holds this key (not sent again)"
        case .queued: "queued for the Particle cloud (no PARTICLE_ACCESS_TOKEN here): run `keyline cloud push`"
        }
    }

    public var state: String {
        switch self {
        case .sent: "sent"
        case .alreadySent: "already_sent"
        case .queued: "queued"
        }
    }
}
