import Foundation
import Registry

/// `keyline cloud push`: drain the outbox's backlog (after a line ran with the internet down, or
/// after a token was replaced), waiting for retries up to a deadline.
public struct CloudPush: Sendable {
    public var api: ParticleAPIBase
    public var tokenFile: String?
    public var station: String?
    public var inFlight: Int
    public var timeout: Duration
    public var retryParked: Bool
    public var joinProduct: Bool

    public init(api: ParticleAPIBase, tokenFile: String?, station: String?, inFlight: Int, timeout: Duration,
                retryParked: Bool, joinProduct: Bool) {
        self.api = api
        self.tokenFile = tokenFile
        self.station = station
        self.inFlight = inFlight
        self.timeout = timeout
        self.retryParked = retryParked
        self.joinProduct = joinProduct
    }

    public struct Result: Sendable {
        public var tally: CloudOutboxDrainer.Tally
        public var requeued: Int
        public var counts: CloudUploadCounts
    }

    /// Drains everything pending. Throws `.parked` when the cloud refused some uploads in this
    /// push (after sending all the others), `.stillPending` when the deadline came first,
    /// `.unauthorized` at once on 401/403.
    public func run(registry: RegistryDatabase) async throws -> Result {
        let token = try await ParticleAccessToken.resolve(tokenFile: tokenFile)
        var requeued = 0
        if retryParked { requeued = try await registry.requeueParkedCloudUploads() }
        let drainer = CloudOutboxDrainer(registry: registry,
                                         client: ParticleCloudClient(api: api, token: token),
                                         station: station, inFlight: inFlight, joinProduct: joinProduct)
        let tally = try await drainer.drain(until: .now + timeout)
        if let first = tally.parked.first {
            throw ParticleCloudError.parked(count: tally.parked.count, firstDeviceID: first.deviceID,
                                            firstReason: first.reason ?? "refused")
        }
        return Result(tally: tally, requeued: requeued, counts: try await registry.cloudUploadCounts())
    }
}
