import LocalFiles
import DeviceBus
import Dispatch
import Escrow
import EscrowS3
import Foundation
import ParticleCloud
import Registry

/// What `keyline provision` is asked for: the pipeline file, the station's settings that win over
/// the pipeline's, and how the run picks its devices.
public struct ProvisioningRequest: Sendable {
    public var pipeline: String
    public var environment: [String: String]
    /// Command-line settings (nil: the environment's or the pipeline's).
    public var overrides: PipelineOverrides
    public var options: ProvisioningOptions
    /// Where the per-device logs of each job go (`<logRoot>/job-<id>/`).
    public var logRoot: String

    /// `station` falls back to KEYLINE_STATION (then the pipeline's `station:`), `logDirectory` to
    /// KEYLINE_LOG_DIR, then ./keyline-logs.
    public init(pipeline: String, environment: [String: String], database: String?, store: String?, recipientsFile: String?,
                station: String?, concurrency: Int?, deviceLimit: Int?, wait: Bool, resumeJobID: Int64?,
                continueRunningJob: Bool = false, continueWait: Duration = .seconds(90),
                reenumerationTimeout: Duration, logDirectory: String?) {
        self.pipeline = pipeline
        self.environment = environment
        overrides = PipelineOverrides(database: database, store: store, recipientsFile: recipientsFile,
                                      station: station ?? StationName.named(in: environment), concurrency: concurrency)
        logRoot = logDirectory ?? environment["KEYLINE_LOG_DIR"] ?? "keyline-logs"
        options = ProvisioningOptions(deviceLimit: deviceLimit, wait: wait, resumeJobID: resumeJobID,
                                      continueRunningJob: continueRunningJob, continueWait: continueWait,
                                      reenumerationTimeout: reenumerationTimeout,
                                      logDirectory: URL(fileURLWithPath: logRoot))
    }
}

/// A station ready to provision: the pipeline loaded, the registry connected, the escrow store
/// opened and checked. All of it before any device is touched: a line must not flash 64 devices
/// and then find nowhere to put the keys.
public struct ProvisioningStation: Sendable {
    public let request: ProvisioningRequest
    public let definition: PipelineDefinition
    public let registry: RegistryDatabase
    public let store: any EscrowStore
    /// Sends the job's cloud uploads while it runs; nil when none can be sent from here.
    public let cloud: LineCloudUploads?
    /// A token refusal the drain met while the job ran (then the job's end does not try again).
    let lastRefusal = CloudRefusalBox()

    public static func prepare(_ request: ProvisioningRequest) async throws -> ProvisioningStation {
        let definition = try await offPool {
            try PipelineLoader.load(path: request.pipeline, environment: request.environment, overrides: request.overrides)
        }
        let settings = definition.database.map { ConnectionSettings(connectionString: $0, source: .databaseURL) }
            ?? ConnectionSettings.fromEnvironment()
        let registry = try await RegistryDatabase.connect(settings, connections: min(max(definition.concurrency, 2), 16))
        // Off the pool: an S3 location reads the AWS credential and config files.
        let (location, environment) = (definition.escrow.store, request.environment)
        let store = try await offPool { try EscrowStores.open(location, environment: environment) }
        if store is DirectoryEscrowStore {
            let location = definition.escrow.store
            try await offPool { try EscrowDirectoryCheck.check(location) }
        }
        let cloud = try await LineCloudUploads.prepare(definition, registry: registry, environment: request.environment)
        return ProvisioningStation(request: request, definition: definition, registry: registry, store: store, cloud: cloud)
    }

    /// Runs the job over `bus` (the station's USB, or a simulated one) until its devices are done
    /// or `stop` is requested.
    public func run(on bus: any DeviceBus, stop: StopSignal,
                    events: @escaping ProvisioningEventSink) async throws -> ProvisioningSummary {
        let runner = ProvisioningRunner(definition: definition, registry: registry, store: store, bus: bus,
                                        options: request.options, stop: stop, events: events)
        guard let cloud else { return try await runner.run() }
        let drainStop = StopSignal()
        let drain = Task { await cloud.keepDraining(until: drainStop) }
        let summary: ProvisioningSummary
        do {
            summary = try await runner.run()
        } catch {
            drainStop.requestStop()
            _ = await drain.value
            throw error
        }
        drainStop.requestStop()
        lastRefusal.set(await drain.value)
        return summary
    }

    /// After `run`: waits for the job's uploads (the pipeline's `cloud.drain_timeout`) and says
    /// where they stand; nil when this station sends none.
    public func finishCloudUploads(jobID: Int64) async throws -> LineCloudUploads.JobOutcome? {
        guard let cloud else { return nil }
        return try await cloud.finish(jobID: jobID, refusal: lastRefusal.value)
    }
}

/// The drain's token refusal, handed from `run` to `finishCloudUploads`.
final class CloudRefusalBox: @unchecked Sendable {
    private let lock = NSLock()
    private var refusal: ParticleCloudError?
    var value: ParticleCloudError? { lock.withLock { refusal } }
    func set(_ value: ParticleCloudError?) { lock.withLock { refusal = value } }
}
