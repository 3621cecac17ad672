import Registry

extension ProvisioningRunner {
    /// How often `--continue` tries again for a job whose lease a session holds.
    static let continueRetryInterval: Duration = .seconds(2)

    /// The job this run drives, its lease, and whether it was under way before this run.
    ///
    /// With `continueRunningJob`, a station whose run died (a crash, a power cut, the service
    /// restarted after a registry outage) takes its own job back instead of starting a new one:
    /// otherwise the old job's devices past `key_ready` would be refused by every later job
    /// (`unfinishedElsewhere`) until somebody ran `--resume` by hand, which an unattended line
    /// has nobody to do. The job is this station's newest `running` one of the pipeline (the
    /// devices on the jig are its). While a session holds its lease — a run still going, or the
    /// session of a station that lost power, which the server drops about 25 s after it went
    /// silent (`LibPQ.serverDeadPeerDetection`) — it tries again for `continueWait`, then gives up
    /// with `jobInUse` (exit 75; systemd starts the unit again): a second job beside the first
    /// would fight it for the same devices.
    func leasedJob() async throws -> (job: Job, lease: JobLease, resumed: Bool) {
        if options.resumeJobID == nil && options.continueRunningJob {
            try await registry.requireCurrentSchema()
            let candidates = try await registry.unfinishedJobs(station: definition.station)
                .filter { $0.productID == definition.product.id && $0.pipeline == definition.name }
            if let newest = candidates.last {
                for older in candidates.dropLast() {
                    events(ProvisioningEvent(type: .note, jobID: older.id, message:
                        "job \(older.id) of this station was left running too; its unfinished devices continue with "
                        + "`keyline provision PIPELINE --resume \(older.id)`"))
                }
                if let taken = try await continueJob(newest) { return taken }
            }
        }
        let found = try await openJob()
        // One process per job: a second `--resume` of a running job is refused, not interleaved;
        // and one that took the job over after a database restart fences this one out.
        guard let lease = try await registry.leaseJob(found.id) else { throw ProvisioningError.jobInUse(found.id) }
        return (found, lease, options.resumeJobID != nil)
    }

    /// Takes `candidate`'s lease, waiting up to `continueWait` while a session holds it; nil when
    /// the job was finished meanwhile (then a new job is started).
    private func continueJob(_ candidate: Job) async throws -> (job: Job, lease: JobLease, resumed: Bool)? {
        let deadline = ContinuousClock.now + options.continueWait
        var said = false
        while true {
            if let lease = try await registry.leaseJob(candidate.id) {
                // Read again under the lease: a run that ended between the listing and the lease
                // has finished the job, and a finished job is not continued.
                let job: Job?
                do {
                    job = try await registry.job(id: candidate.id)
                } catch {
                    await lease.release()
                    throw error
                }
                guard let job, job.status == .running else {
                    await lease.release()
                    return nil
                }
                return (job, lease, true)
            }
            guard ContinuousClock.now < deadline else { throw ProvisioningError.jobInUse(candidate.id) }
            if !said {
                said = true
                events(ProvisioningEvent(type: .note, jobID: candidate.id, message:
                    "job \(candidate.id), left running, is held by another session (a run still going, or a station "
                    + "that lost power, until the registry drops its session): waiting up to \(options.continueWait) to continue it"))
            }
            if await stop.sleep(for: Self.continueRetryInterval) { throw ProvisioningError.jobInUse(candidate.id) }
        }
    }
}
