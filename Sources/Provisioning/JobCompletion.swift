import Registry

/// When a job is complete: when the registry shows every one of its devices done or abandoned,
/// whatever this run saw. A resume that waited for a device which never came back, or a device
/// the run skipped while its record in the job is unfinished, leaves the job not complete, and the
/// run names each such device (as failed: `provision` exits 3) with what to do.
enum JobCompletion {
    /// The job's unfinished devices (neither done nor abandoned) this run has no failure or
    /// interruption to show for.
    static func unaccounted(jobID: Int64, registry: RegistryDatabase, reports: [DeviceReport]) async throws -> [JobDevice] {
        let accounted = Set(reports.filter { $0.outcome == .failed || $0.outcome == .interrupted }.compactMap(\.deviceID))
        return try await registry.jobDevices(jobID: jobID).filter { $0.isUnfinished && !accounted.contains($0.deviceID) }
    }

    /// The failure report of an unaccounted device: never seen on the bus, or seen and skipped.
    static func report(_ device: JobDevice, jobID: Int64, skipped: DeviceReport?, waited: Duration) -> DeviceReport {
        let state = device.lastGoodState ?? device.state
        let remedy = "plug it in and run `keyline provision PIPELINE --resume \(jobID)` again, or give it up with "
            + "`keyline job abandon \(jobID) \(device.deviceID) --reason …`"
        let reason = if let skipped {
            "unfinished in job \(jobID) (state \(state)) but skipped: \(skipped.reason ?? "?"); \(remedy)"
        } else {
            "unfinished in job \(jobID) (state \(state)) and did not appear on the bus within \(waited): \(remedy)"
        }
        return DeviceReport(port: skipped?.port ?? device.portPath ?? "-", deviceID: device.deviceID,
                            platform: skipped?.platform ?? device.platform ?? "?", outcome: .failed,
                            state: DeviceWorkflowState(rawValue: device.state), fingerprint: device.keyFingerprint,
                            reason: reason, failureClass: ProvisioningError.deviceMissing(deviceID: device.deviceID, waited: waited).failureClass.rawValue,
                            failedStep: .identify, steps: [], seconds: 0)
    }
}
