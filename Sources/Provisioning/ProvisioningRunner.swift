import DeviceBus
import ParticlePlatform
import Escrow
import FailurePolicy
import Foundation
import Registry

/// How a run picks its devices and ends.
public struct ProvisioningOptions: Sendable {
    /// Provision at most this many devices (with `wait`: keep waiting until this many have run).
    public var deviceLimit: Int?
    /// Keep running and provision devices as they are plugged in, until stopped.
    public var wait: Bool
    /// Continue this job's unfinished devices instead of starting a new job.
    public var resumeJobID: Int64?
    /// Without `resumeJobID`: continue this station's newest job of the pipeline's product that
    /// an earlier run left running (a crash, a power cut, a service restart), when no process
    /// drives it; start a new job only when there is none.
    public var continueRunningJob: Bool
    /// How long to wait for a device to come back after a mode switch, or to be plugged back in.
    public var reenumerationTimeout: Duration
    /// Where per-device logs go (`<directory>/job-<id>/`); nil = no logs.
    public var logDirectory: URL?
    /// Temp files of killed escrow writes older than this are removed when the run starts.
    public var staleTemporaryFileAge: Duration

    public init(deviceLimit: Int? = nil, wait: Bool = false, resumeJobID: Int64? = nil, continueRunningJob: Bool = false,
                reenumerationTimeout: Duration = .seconds(20), logDirectory: URL? = nil,
                staleTemporaryFileAge: Duration = .seconds(600)) {
        self.deviceLimit = deviceLimit
        self.wait = wait
        self.resumeJobID = resumeJobID
        self.continueRunningJob = continueRunningJob
        self.reenumerationTimeout = reenumerationTimeout
        self.logDirectory = logDirectory
        self.staleTemporaryFileAge = staleTemporaryFileAge
    }
}

/// Runs a pipeline over the devices on the station's bus: one task per device under a bounded
/// group (the pipeline's concurrency), each walking the persisted workflow (`DeviceWorkflow`).
/// One device failing, stalling or being unplugged ends only that device's task.
///
/// Blocking work never runs on Swift's cooperative pool: USB transfers run on each device's
/// thread (USB, simulator), libpq calls on each connection's queue (Registry), file I/O and
/// fsync on the escrow store's queue (Escrow). Device tasks only await them.
public struct ProvisioningRunner: Sendable {
    public let definition: PipelineDefinition
    public let registry: RegistryDatabase
    public let store: any EscrowStore
    /// The station's USB bus (libusb) or a simulated one; one watcher enumerates it for every device task.
    public let bus: any DeviceBus
    public let options: ProvisioningOptions
    public let stop: StopSignal
    public let events: ProvisioningEventSink

    public init(definition: PipelineDefinition, registry: RegistryDatabase, store: any EscrowStore,
                bus: any DeviceBus, options: ProvisioningOptions, stop: StopSignal,
                events: @escaping ProvisioningEventSink) {
        self.definition = definition
        self.registry = registry
        self.store = store
        self.bus = bus
        self.options = options
        self.stop = stop
        self.events = events
    }

    /// Creates (or reopens, with `resumeJobID`) the job, takes its lease (every state write of the
    /// run presents it), provisions the devices and finishes the job: `completed` when the registry
    /// shows every device of the job done or abandoned, `failed` otherwise (a device that failed,
    /// or one of the job's that never showed up: named in the summary); left `running` when the run
    /// was stopped, so `--resume` finds it.
    public func run() async throws -> ProvisioningSummary {
        let clock = ContinuousClock.now
        let (found, lease, resumed) = try await leasedJob()
        let registry = self.registry.fenced(by: lease)
        // The lease and the logs are given up on every way out, a thrown error included.
        var log: JobLog?
        do {
            let job = found.status == .running ? found : try await registry.finishJob(id: found.id, status: .running)
            log = try options.logDirectory.map { try JobLog(root: $0, jobID: job.id) }
            let summary = try await provision(job: job, lease: lease, resumed: resumed, registry: registry, clock: clock, log: log)
            await log?.close()
            await lease.release()
            return summary
        } catch {
            await log?.close()
            await lease.release()
            throw error
        }
    }

    private func provision(job: Job, lease: JobLease, resumed: Bool, registry: RegistryDatabase, clock: ContinuousClock.Instant,
                           log: JobLog?) async throws -> ProvisioningSummary {
        let ports = definition.ports
        let emit: ProvisioningEventSink = { [events] event in
            var event = event
            // A permitted port's nickname travels with every event about it.
            if let port = event.port, let name = ports?.name(forPortPath: port) { event.portName = name }
            log?.record(event)
            events(event)
        }
        emit(ProvisioningEvent(type: .jobStarted, jobID: job.id, platform: definition.platform.name,
                               message: !resumed
                                   ? "job \(job.id): \(definition.name) for product \(definition.product.id) on station \(definition.station)"
                                   : options.resumeJobID == nil
                                   ? "continuing job \(job.id), left running by an earlier run: \(definition.name) for product \(definition.product.id)"
                                   : "resuming job \(job.id): \(definition.name) for product \(definition.product.id)"))
        // A write killed by a crash leaves a temp file (ciphertext only) beside its object.
        if let swept = try? await store.sweepStaleTemporaryFiles(olderThan: options.staleTemporaryFileAge), swept > 0 {
            emit(ProvisioningEvent(type: .note, jobID: job.id, message: "removed \(swept) stale temporary file(s) of interrupted escrow writes"))
        }

        let watcher = DeviceBusWatcher(bus: bus)
        let heartbeat = StationHeartbeat(registry: registry, station: definition.station,
                                         ports: definition.ports?.ports.map { StationPort(path: $0.path, name: $0.name) } ?? [])
        var context = ProvisioningContext(definition: definition, jobID: job.id, registry: registry, store: store,
                                          watcher: watcher, stop: stop, emit: emit,
                                          reenumerationTimeout: options.reenumerationTimeout)
        context.heartbeat = heartbeat
        let resumeDevices = resumed ? try await unfinishedDevices(job.id, registry: registry) : nil
        // Subscribed before the first listing, so no arrival falls between the two.
        let changes = watcher.changes()
        watcher.start()
        defer { watcher.stop() }
        let attached = try await bus.enumerate()
        let refusals = PortRefusals(definition: definition, jobID: job.id, registry: registry, emit: emit)
        heartbeat.start(jobID: job.id)
        // The lease is kept (taken again after a failover) while devices are driven.
        let keeper = JobLeaseKeeper(lease: lease, stop: stop, emit: emit)
        var reports = await provision(context: context, attached: attached, changes: changes, resumeDevices: resumeDevices,
                                      refusals: refusals)
        await keeper.finish()
        await heartbeat.stop()
        await refusals.finish()
        if let lost = keeper.lost { throw lost }
        // A run whose lease another run took ends here, saying so: its writes were refused. (The
        // registry away right now is waited out below, where the job's end is recorded, fenced too.)
        do { try await registry.requireLease() } catch let lost as JobLeaseError { throw lost } catch {}
        let interrupted = stop.isStopRequested && reports.contains { $0.outcome == .interrupted }
        if !interrupted {
            // The job's own record decides, not this run's reports: a device of the job that never
            // showed up (a resume) has no report, and the job is not complete while it is unfinished.
            let unfinished = try await JobCompletion.unaccounted(jobID: job.id, registry: registry, reports: reports)
            for device in unfinished {
                let report = JobCompletion.report(device, jobID: job.id, skipped: reports.first { $0.deviceID == device.deviceID },
                                                  waited: options.reenumerationTimeout)
                reports.removeAll { $0.deviceID == device.deviceID }
                emit(ProvisioningEvent(type: .deviceFinished, jobID: job.id, port: report.port, deviceID: report.deviceID,
                                       platform: report.platform, outcome: .failed, message: report.reason,
                                       failureClass: report.failureClass))
                reports.append(report)
            }
            let failed = reports.contains { $0.outcome == .failed }
            try await finish(job.id, registry: registry, status: failed ? .failed : .completed, emit: emit)
        }
        let summary = ProvisioningSummary(jobID: job.id, product: definition.product.id, station: definition.station,
                                          devices: reports.sorted { ($0.port, $0.deviceID ?? "") < ($1.port, $1.deviceID ?? "") },
                                          seconds: DeviceWorkflow.seconds(ContinuousClock.now - clock),
                                          interrupted: interrupted)
        emit(ProvisioningEvent(type: .jobFinished, jobID: job.id, elapsed: summary.seconds,
                               message: "\(summary.count(.done)) done, \(summary.count(.failed)) failed, \(summary.count(.skipped)) skipped, \(summary.count(.interrupted)) interrupted"))
        return summary
    }

    // MARK: The job

    /// Records the job's end, waiting for the registry if it is away right then (a job left
    /// `running` after a clean end would be resumed for nothing). A stop gives up: the job stays
    /// `running` and a resume finds every device done.
    private func finish(_ jobID: Int64, registry: RegistryDatabase, status: JobStatus,
                        emit: ProvisioningEventSink) async throws {
        var attempt = 1
        while true {
            do {
                _ = try await registry.finishJob(id: jobID, status: status)
                return
            } catch {
                guard error.failureClass == .retryable || error.failureClass == .needsOperator else { throw error }
                if attempt == 3 {
                    emit(ProvisioningEvent(type: .held, jobID: jobID, message: "waiting for the registry to record the job's end: \(error)",
                                           failureClass: error.failureClass.rawValue))
                }
                if await stop.sleep(for: definition.retries.backoff(beforeAttempt: attempt + 1)) { return }
                attempt += 1
            }
        }
    }

    func openJob() async throws -> Job {
        // Before any device is touched: every device would otherwise wait on a missing column.
        try await registry.requireCurrentSchema()
        if let id = options.resumeJobID {
            guard let job = try await registry.job(id: id) else { throw ProvisioningError.unknownJob(id) }
            guard job.productID == definition.product.id else {
                throw ProvisioningError.jobOfAnotherProduct(jobID: id, product: job.productID, expected: definition.product.id)
            }
            return job  // re-opened (status running) once the lease is taken
        }
        if try await registry.product(id: definition.product.id) == nil {
            do {
                _ = try await registry.createProduct(id: definition.product.id, name: definition.product.name,
                                                     platform: definition.platform.name)
            } catch RegistryError.productExists {
                // Another station created it a moment ago.
            }
        }
        return try await registry.createJob(productID: definition.product.id, station: definition.station,
                                            pipeline: definition.name)
    }

    /// Device IDs of the job that are neither done nor abandoned (failed ones included: a resume
    /// tries them again).
    private func unfinishedDevices(_ jobID: Int64, registry: RegistryDatabase) async throws -> [String] {
        try await registry.jobDevices(jobID: jobID).filter(\.isUnfinished).map(\.deviceID)
    }

    // MARK: Devices

    /// Feeds devices to a bounded group of device tasks: those attached now (or, on resume, the
    /// job's unfinished ones as they show up), then with `wait` every arrival until stopped.
    private func provision(context: ProvisioningContext, attached: [BusDevice], changes: AsyncStream<BusChange>,
                           resumeDevices: [String]?, refusals: PortRefusals) async -> [DeviceReport] {
        let queue = DeviceQueue(definition: definition, limit: options.deviceLimit, emit: context.emit, jobID: context.jobID,
                                refusals: refusals)
        let arrivals = Task {
            // A resumed job goes on with every attached device, as the stopped run would have
            // (some never reached the registry before the stop), and waits a while for the job's
            // unfinished ones that are not attached yet (after a power cut they boot in their own time).
            if let resumeDevices { queue.await(resumeDevices) }
            for device in attached { queue.offer(device) }
            if !options.wait {
                if queue.awaitsNone {
                    queue.finish()
                } else {
                    let timeout = options.reenumerationTimeout
                    Task {
                        _ = await stop.sleep(for: timeout)
                        queue.finish()
                    }
                }
            }
            for await change in changes {
                if case .arrived(let device) = change {
                    queue.offer(device)
                    if resumeDevices != nil && !options.wait && queue.awaitsNone { queue.finish() }
                }
                if case .departed(let device) = change { queue.departed(device) }
            }
        }
        let stopWatch = Task {
            while !stop.isStopRequested { if await stop.sleep(for: .seconds(3600)) { break } }
            queue.finish()
        }
        defer {
            arrivals.cancel()
            stopWatch.cancel()
        }

        let concurrency = max(1, definition.concurrency)
        var reports: [DeviceReport] = []
        await withTaskGroup(of: DeviceReport.self) { group in
            var running = 0
            for await device in queue.devices {
                if running >= concurrency, let report = await group.next() {
                    running -= 1
                    reports.append(report)
                }
                if stop.isStopRequested {
                    // Taken off the queue but not started: reported, so the run does not look complete.
                    reports.append(DeviceQueue.notStarted(device))
                    continue
                }
                group.addTask {
                    let report = await DeviceWorkflow(context: context, deviceID: device.deviceID, platform: device.platform,
                                                      port: device.port).run()
                    // At once, not when the group is next drained: with --wait, a failed device
                    // unplugged and plugged back in is taken again only once it is marked finished.
                    queue.finished(report)
                    return report
                }
                running += 1
            }
            for await report in group { reports.append(report) }
        }
        return reports + queue.skipped
    }
}

/// A device ready for a task: its ID, platform and where it was seen.
struct QueuedDevice: Sendable {
    let deviceID: String
    let platform: Platform
    let port: USBPortPath
}

/// Decides which bus arrivals become device tasks: the pipeline's platform and selection, each
/// device once at a time (a device re-enumerating during its own run is not a new device), a
/// failed device again after it was unplugged and plugged back, at most `limit` in all.
final class DeviceQueue: @unchecked Sendable {
    let devices: AsyncStream<QueuedDevice>
    private let continuation: AsyncStream<QueuedDevice>.Continuation
    private let definition: PipelineDefinition
    private let emit: ProvisioningEventSink
    private let jobID: Int64
    private let refusals: PortRefusals?
    private let lock = NSLock()
    private var limit: Int?
    private var awaited: Set<String> = []  // resume: the job's unfinished devices not seen yet
    private var active: Set<String> = []   // queued or running
    private var retryable: Set<String> = [] // failed, eligible again once unplugged
    private var ended: Set<String> = []     // finished (done, skipped, failed and still attached)
    private var ignoredPorts: Set<String> = []
    private var refusedPorts: Set<String> = []  // not permitted, said once per arrival
    private var skippedReports: [DeviceReport] = []
    /// Devices seen and left alone (another platform, not a device ID).
    var skipped: [DeviceReport] { lock.withLock { skippedReports } }
    private var started = 0
    private var closed = false

    init(definition: PipelineDefinition, limit: Int?, emit: @escaping ProvisioningEventSink, jobID: Int64,
         refusals: PortRefusals? = nil) {
        (devices, continuation) = AsyncStream.makeStream(of: QueuedDevice.self)
        self.definition = definition
        self.limit = limit
        self.emit = emit
        self.jobID = jobID
        self.refusals = refusals
    }

    /// Device IDs a resumed job waits for (without `--wait`, until they all arrived or a timeout).
    func await(_ deviceIDs: [String]) {
        lock.withLock { awaited = Set(deviceIDs) }
    }

    var awaitsNone: Bool { lock.withLock { awaited.isEmpty } }

    func offer(_ device: BusDevice) {
        let identity = device.identity
        guard let (platform, _) = Platform.matching(vendorID: identity.vendorID, productID: identity.productID) else { return }
        let port = identity.port
        let serial = identity.serialNumber?.lowercased() ?? ""
        var skip: DeviceReport?
        var refused = false
        let queued: QueuedDevice? = lock.withLock {
            guard !closed else { return nil }
            // Outside the jig's ports: left alone, whoever it is (the serial is what enumeration read).
            if let ports = definition.ports, !ports.permits(portPath: port.description) {
                guard refusedPorts.insert(port.description).inserted else { return nil }
                refused = true
                skip = DeviceReport(port: port.description, deviceID: platform.isValidDeviceID(serial) ? serial : nil,
                                    platform: platform.name, outcome: .skipped, state: nil, fingerprint: nil,
                                    reason: PortRefusals.reason(port: port.description), failureClass: nil,
                                    failedStep: nil, steps: [], seconds: 0)
                skippedReports.append(skip!)
                return nil
            }
            guard !active.contains(serial), !ended.contains(serial) else { return nil }
            if let serials = definition.selection.serials, !serials.contains(serial) { return nil }
            if let ports = definition.selection.ports, !ports.contains(port.description) { return nil }
            if platform != definition.platform || !platform.isValidDeviceID(serial) {
                // Said once per port, not on every re-enumeration of a device that is not ours.
                guard ignoredPorts.insert(port.description).inserted else { return nil }
                let reason = platform != definition.platform
                    ? "a \(platform.name), but the pipeline provisions \(definition.platform.name): not touched"
                    : serial.isEmpty ? "its serial number could not be read (still settling, or no permission): not touched; run it again"
                    : "serial \"\(Self.printable(serial))\" is not a \(platform.name) device ID: not touched"
                // The serial is the device's own text: reported only when it is a device ID.
                skip = DeviceReport(port: port.description, deviceID: platform.isValidDeviceID(serial) ? serial : nil,
                                    platform: platform.name,
                                    outcome: .skipped, state: nil, fingerprint: nil, reason: reason, failureClass: nil,
                                    failedStep: nil, steps: [], seconds: 0)
                skippedReports.append(skip!)
                return nil
            }
            if let limit, started >= limit { return nil }
            started += 1
            active.insert(serial)
            awaited.remove(serial)
            retryable.remove(serial)
            return QueuedDevice(deviceID: serial, platform: platform, port: port)
        }
        if refused, let skip {
            refusals?.refuse(port: port, deviceID: skip.deviceID, platform: platform)
        } else if let skip {
            emit(ProvisioningEvent(type: .deviceFinished, jobID: jobID, port: skip.port, deviceID: skip.deviceID,
                                   platform: skip.platform, outcome: .skipped, message: skip.reason))
        }
        if let queued { continuation.yield(queued) }
        let full = lock.withLock { limit.map { started >= $0 } ?? false }
        if full { finish() }
    }

    func departed(_ device: BusDevice) {
        // Before the serial guard: a device refused for its port may have had no readable serial.
        lock.withLock { _ = refusedPorts.remove(device.identity.port.description) }
        guard let serial = device.identity.serialNumber?.lowercased() else { return }
        lock.withLock {
            // Unplugged after failing: the next arrival is a person trying it again.
            if retryable.contains(serial) { ended.remove(serial) }
            ignoredPorts.remove(device.identity.port.description)
        }
    }

    func finished(_ report: DeviceReport) {
        guard let serial = report.deviceID else { return }
        lock.withLock {
            active.remove(serial)
            ended.insert(serial)
            if report.outcome == .failed { retryable.insert(serial) }
        }
    }

    /// A device's text for a message: printable ASCII only (no terminal escapes), at most 40 characters.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.prefix(40).map { (32...126).contains($0.value) ? $0 : "?" }))
    }

    /// The report of a device the run took but never started (a stop came first).
    static func notStarted(_ device: QueuedDevice) -> DeviceReport {
        DeviceReport(port: device.port.description, deviceID: device.deviceID, platform: device.platform.name,
                     outcome: .interrupted, state: nil, fingerprint: nil, reason: "not started: the run was stopped",
                     failureClass: nil, failedStep: nil, steps: [], seconds: 0)
    }

    /// No more devices will be queued (stop requested, not waiting, or the limit reached).
    func finish() {
        lock.withLock { closed = true }
        continuation.finish()
    }

}
