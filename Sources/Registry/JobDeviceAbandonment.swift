import FailurePolicy
import Foundation

/// An operator's call on a job device the job cannot finish (its key damaged or changed since
/// `key_ready`, a board thrown away): abandon it, or re-open it, with a reason. The device keeps
/// its state and record; while abandoned it moves no further, a resume does not wait for it, the
/// job can complete without it (and its report says it was abandoned), and later jobs may take the
/// device. The same transaction appends `job_device.abandoned` / `job_device.reopened` with the
/// reason and what the device held; the database sets who, where and when, and refuses the change
/// without its event (schema 0010).
extension RegistryDatabase {
    @discardableResult
    public func abandonJobDevice(jobID: Int64, deviceID: String, reason: String, station: String?) async throws -> JobDevice {
        try await changeAbandonment(jobID: jobID, deviceID: deviceID, reason: reason, station: station, abandon: true)
    }

    @discardableResult
    public func reopenJobDevice(jobID: Int64, deviceID: String, reason: String, station: String?) async throws -> JobDevice {
        try await changeAbandonment(jobID: jobID, deviceID: deviceID, reason: reason, station: station, abandon: false)
    }

    private func changeAbandonment(jobID: Int64, deviceID: String, reason: String, station: String?,
                                   abandon: Bool) async throws -> JobDevice {
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty else { throw JobDeviceAbandonmentError.reasonRequired(jobID: jobID, deviceID: deviceID) }
        return try await run(abandon ? "abandon job devices" : "re-open job devices") { transaction in
            guard let device = try Self.lockedJobDevice(jobID: jobID, deviceID: deviceID, in: transaction) else {
                throw JobDeviceAbandonmentError.notInJob(jobID: jobID, deviceID: deviceID)
            }
            if device.state == "done" { throw JobDeviceAbandonmentError.done(jobID: jobID, deviceID: deviceID) }
            guard (device.abandonedAt == nil) == abandon else {
                throw abandon ? JobDeviceAbandonmentError.alreadyAbandoned(jobID: jobID, deviceID: deviceID)
                              : JobDeviceAbandonmentError.notAbandoned(jobID: jobID, deviceID: deviceID)
            }
            var detail = ["reason": reason, "state": device.state]
            detail["last_good_state"] = device.lastGoodState
            detail["fingerprint"] = device.keyFingerprint
            let job = try transaction.queryOne("SELECT product_id FROM jobs WHERE id = $1", [jobID])
            try Self.appendEvent(kind: abandon ? "job_device.abandoned" : "job_device.reopened", station: station,
                                 productID: try job?.decode("product_id", as: String.self), deviceID: deviceID, jobID: jobID,
                                 detail: detail, in: transaction)
            let row = try transaction.queryOne("""
                UPDATE job_devices SET abandoned_at = CASE WHEN $3 THEN now() END,
                    abandon_reason = CASE WHEN $3 THEN $4 END
                WHERE job_id = $1 AND device_id = $2
                RETURNING \(Self.jobDeviceColumns)
                """, [jobID, deviceID, abandon, reason])
            return try Self.jobDevice(row!)
        }
    }
}

/// Why an abandon or re-open was refused.
public enum JobDeviceAbandonmentError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    case reasonRequired(jobID: Int64, deviceID: String)
    case notInJob(jobID: Int64, deviceID: String)
    /// A done device is provisioned: there is nothing to abandon.
    case done(jobID: Int64, deviceID: String)
    case alreadyAbandoned(jobID: Int64, deviceID: String)
    case notAbandoned(jobID: Int64, deviceID: String)

    public var description: String {
        switch self {
        case .reasonRequired(let job, let device):
            "abandoning or re-opening device \(device) in job \(job) needs a reason (--reason): it goes into the audit trail"
        case .notInJob(let job, let device):
            "device \(device) is not in job \(job); `keyline report \(job)` lists the job's devices"
        case .done(let job, let device):
            "device \(device) is done in job \(job): its key is escrowed and registered, there is nothing to abandon"
        case .alreadyAbandoned(let job, let device):
            "device \(device) in job \(job) is already abandoned; `keyline job reopen` takes it back"
        case .notAbandoned(let job, let device):
            "device \(device) in job \(job) is not abandoned; nothing to re-open"
        }
    }

    public var failureClass: FailureClass { .badInput }
}
