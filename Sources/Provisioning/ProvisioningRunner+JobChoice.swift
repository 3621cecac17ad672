import Registry

extension ProvisioningRunner {
    /// The job this run drives, its lease, and whether it was under way before this run.
    ///
    /// With `continueRunningJob`, a station whose run died (a crash, a power cut, the service
    /// restarted after a registry outage) takes its own job back instead of starting a new one:
    /// otherwise the old job's devices past `key_ready` would be refused by every later job
    /// (`unfinishedElsewhere`) until somebody ran `--resume` by hand, which an unattended line
    /// has nobody to do. Only a job of this station, product and pipeline that no process holds is
    /// continued (its lease is free); the newest one, since the devices on the jig now are its.
    func leasedJob() async throws -> (job: Job, lease: JobLease, resumed: Bool) {
        if options.resumeJobID == nil && options.continueRunningJob {
            try await registry.requireCurrentSchema()
            let candidates = try await registry.unfinishedJobs(station: definition.station)
                .filter { $0.productID == definition.product.id && $0.pipeline == definition.name }
            for (index, candidate) in candidates.enumerated().reversed() {
                guard let lease = try await registry.leaseJob(candidate.id) else { continue }
                // Read again under the lease: a run that ended between the listing and the lease
                // has finished the job, and a finished job is not continued.
                guard let job = try await registry.job(id: candidate.id), job.status == .running else {
                    await lease.release()
                    continue
                }
                for older in candidates[..<index] {
                    events(ProvisioningEvent(type: .note, jobID: older.id, message:
                        "job \(older.id) of this station was left running too; its unfinished devices continue with "
                        + "`keyline provision PIPELINE --resume \(older.id)`"))
                }
                return (job, lease, true)
            }
        }
        let found = try await openJob()
        // One process per job: a second `--resume` of a running job is refused, not interleaved;
        // and one that took the job over after a database restart fences this one out.
        guard let lease = try await registry.leaseJob(found.id) else { throw ProvisioningError.jobInUse(found.id) }
        return (found, lease, options.resumeJobID != nil)
    }
}
