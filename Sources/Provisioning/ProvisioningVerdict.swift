import FailurePolicy

/// What a finished run means for whoever started it, and so how `keyline provision` exits: the
/// first of these that applies, in the order of what to fix first.
public enum ProvisioningVerdict: Sendable, Equatable {
    /// Every device done, or skipped (another platform, already provisioned).
    case done
    /// Devices waited for the registry or the store when the run stopped, or there was no device.
    case failed(ProvisioningRunError)
    /// Stopped on request (Ctrl-C): `--resume` continues.
    case interrupted
    /// Devices failed for want of the registry or the store: that, not the devices, is what to fix.
    case infrastructureFailed
    /// Some devices failed; the others are done.
    case someDevicesFailed
}

/// A run that did nothing to report device by device: say why, and what to do.
public enum ProvisioningRunError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `count` devices were held, waiting for infrastructure (`reason`: the first one's), when the run stopped.
    case devicesWaiting(count: Int, reason: String, jobID: Int64)
    /// Nothing attached, or nothing the pipeline selects.
    case noDevices

    public var description: String {
        switch self {
        case .devicesWaiting(let count, let reason, let jobID):
            "\(count) device(s) were waiting when the run stopped: \(reason); fix it, then run with --resume \(jobID)"
        case .noDevices:
            "no device to provision: none attached or none selected by the pipeline"
        }
    }
}

extension ProvisioningSummary {
    /// `waited`: the run took devices as they arrived (--wait); `resumed`: it continued a job.
    /// Either way, no device at all is not a failure.
    public func verdict(waited: Bool, resumed: Bool) -> ProvisioningVerdict {
        let needsOperator = FailureClass.needsOperator.rawValue
        let held = devices.filter { $0.outcome == .interrupted && $0.failureClass == needsOperator }
        if let first = held.first {
            return .failed(.devicesWaiting(count: held.count, reason: first.reason ?? "?", jobID: jobID))
        }
        if interrupted { return .interrupted }
        if devices.isEmpty && !waited && !resumed { return .failed(.noDevices) }
        if devices.contains(where: { $0.outcome == .failed && $0.failureClass == needsOperator }) { return .infrastructureFailed }
        if count(.failed) > 0 { return .someDevicesFailed }
        return .done
    }

    /// Whether `--resume` of this job has anything left to do.
    public var isResumable: Bool { count(.interrupted) > 0 || count(.failed) > 0 }
}
