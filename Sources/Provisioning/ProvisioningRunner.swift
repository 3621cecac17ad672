import DeviceBus
import ParticlePlatform
import Escrow
import FailurePolicy
import Foundation
import Registry

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

    /// Creates the job (or reopens `resumeJobID`'s, or with `continueRunningJob` takes back the one
    /// an earlier run left running: `leasedJob()`), takes its lease (every state write of the
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
