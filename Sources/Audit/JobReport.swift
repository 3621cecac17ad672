import Foundation
import Registry

/// How a job went, built from the registry: its devices, the steps each ran with their timings,
/// and the totals (`keyline report JOB`). The property names are the report's JSON fields.
public struct JobReport: Codable, Sendable {
    public struct Step: Codable, Sendable {
        public var step: String
        /// Seconds from the start of the batch.
        public var start: Double
        public var seconds: Double
        public var attempts: Int
        public var outcome: String
        public var reason: String?
        public var startedAt: Date
        /// A failed try of a step that ran again after it (the device did not fail here).
        public var retried: Bool = false
    }

    public struct Device: Codable, Sendable {
        public var port: String
        public var deviceID: String
        public var platform: String?
        /// The device's state now: done, failed, or the state an unfinished device stopped in.
        public var outcome: String
        public var state: String
        public var attempts: Int
        public var failedStep: String?
        public var reason: String?
        public var fingerprint: String?
        public var steps: [Step]
        /// From its first step's start to its last step's end.
        public var seconds: Double
        /// Its key's Particle cloud upload: pending, sent or parked (nil: none queued).
        public var cloud: String?
        /// Why the cloud refused (parked) or the last retryable problem (pending).
        public var cloudReason: String?
    }

    public struct Totals: Codable, Sendable {
        public var devices: Int
        public var done: Int
        public var failed: Int
        public var unfinished: Int
        /// From the first step's start to the last step's end.
        public var wallSeconds: Double
        /// Sum over devices of the time their steps ran.
        public var busySeconds: Double
        /// Most devices running at once.
        public var peakParallel: Int
        /// Devices done per minute of wall time.
        public var throughputPerMinute: Double
        /// busy / (wall × peak parallel) over the devices that finished (done): 1 when every port
        /// worked the whole time. A failed device (held, then given up) would dominate it otherwise.
        public var parallelEfficiency: Double
    }

    public var job: Int64
    public var product: String
    public var station: String
    public var pipeline: String
    public var status: String
    public var startedAt: Date
    public var finishedAt: Date?
    public var devices: [Device]
    public var totals: Totals

    /// The report of job `jobID` as the registry has it now; `AuditError.unknownJob` when there is none.
    public static func load(jobID: Int64, settings: ConnectionSettings = .fromEnvironment()) async throws -> JobReport {
        try await load(jobID: jobID, registry: try await RegistryDatabase.connect(settings))
    }

    /// The report of job `jobID` read through `registry` (the dashboard's shared pool).
    public static func load(jobID: Int64, registry: RegistryDatabase) async throws -> JobReport {
        guard let job = try await registry.job(id: jobID) else { throw AuditError.unknownJob(jobID) }
        return JobReport(job: job, devices: try await registry.jobDevices(jobID: job.id), steps: try await registry.steps(jobID: job.id),
                         cloudUploads: try await registry.cloudUploads(jobID: job.id))
    }

    public init(job: Job, devices jobDevices: [JobDevice], steps: [StepRecord], cloudUploads: [CloudUpload] = []) {
        let uploads = Dictionary(cloudUploads.map { ($0.deviceID, $0) }, uniquingKeysWith: { $1 })
        self.job = job.id
        product = job.productID
        station = job.station
        pipeline = job.pipeline
        status = job.status.rawValue
        startedAt = job.startedAt
        finishedAt = job.finishedAt
        let origin = steps.map(\.startedAt).min() ?? job.startedAt
        let byDevice = Dictionary(grouping: steps, by: \.deviceID)
        devices = jobDevices.map { device in
            let records = (byDevice[device.deviceID] ?? []).sorted { $0.startedAt < $1.startedAt }
            var timed = records.map { record in
                Step(step: record.step, start: record.startedAt.timeIntervalSince(origin), seconds: record.seconds,
                     attempts: record.attempts, outcome: record.outcome.rawValue, reason: record.reason,
                     startedAt: record.startedAt)
            }
            // Every try is a row (the runner records each one); a failed one the step ran again after was retried.
            for index in timed.indices where timed[index].outcome == "failed" {
                timed[index].retried = timed[(index + 1)...].contains { $0.step == timed[index].step }
            }
            let first = timed.map(\.start).min() ?? 0
            let last = timed.map { $0.start + $0.seconds }.max() ?? 0
            let failedStep = device.state == "failed" ? timed.last(where: { $0.outcome == "failed" }) : nil
            return Device(port: device.portPath ?? "-", deviceID: device.deviceID, platform: device.platform,
                          outcome: device.abandonedAt != nil ? "abandoned"
                              : device.state == "done" ? "done" : device.state == "failed" ? "failed" : "unfinished",
                          state: device.lastGoodState.map { "failed after \($0)" } ?? device.state,
                          attempts: device.attempts, failedStep: failedStep?.step,
                          // An abandoned device says why an operator gave it up (`keyline job abandon`).
                          reason: device.abandonReason.map { "abandoned: \($0)" } ?? device.lastError ?? failedStep?.reason, fingerprint: device.keyFingerprint,
                          steps: timed, seconds: max(0, last - first),
                          cloud: uploads[device.deviceID]?.state.rawValue, cloudReason: uploads[device.deviceID]?.reason)
        }.sorted { ($0.port, $0.deviceID) < ($1.port, $1.deviceID) }
        totals = Self.totals(devices)
    }

    static func totals(_ devices: [Device]) -> Totals {
        let all = usage(devices)
        let finished = usage(devices.filter { $0.outcome == "done" })
        let done = devices.filter { $0.outcome == "done" }.count
        let failed = devices.filter { $0.outcome == "failed" }.count
        return Totals(devices: devices.count, done: done, failed: failed, unfinished: devices.count - done - failed,
                      wallSeconds: all.wall, busySeconds: all.busy, peakParallel: all.peak,
                      throughputPerMinute: all.wall > 0 ? Double(done) * 60 / all.wall : 0,
                      parallelEfficiency: finished.wall > 0 && finished.peak > 0
                          ? min(1, finished.busy / (finished.wall * Double(finished.peak))) : 0)
    }

    /// The wall time the devices' steps span, the time their steps ran, and the most at once.
    static func usage(_ devices: [Device]) -> (wall: Double, busy: Double, peak: Int) {
        let spans = devices.compactMap { device -> (Double, Double)? in
            guard let first = device.steps.map(\.start).min(),
                  let last = device.steps.map({ $0.start + $0.seconds }).max() else { return nil }
            return (first, last)
        }
        let wall = max(0, (spans.map(\.1).max() ?? 0) - (spans.map(\.0).min() ?? 0))
        let busy = devices.reduce(0) { $0 + $1.steps.reduce(0) { $0 + $1.seconds } }
        // Sweep the device spans for the most that overlap.
        var edges: [(time: Double, change: Int)] = []
        for (start, end) in spans {
            edges.append((start, 1))
            edges.append((end, -1))
        }
        edges.sort { left, right in left.time != right.time ? left.time < right.time : left.change < right.change }
        var running = 0
        var peak = 0
        for edge in edges {
            running += edge.change
            peak = max(peak, running)
        }
        return (wall, busy, peak)
    }
}
