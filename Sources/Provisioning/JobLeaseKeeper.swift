import Foundation
import Registry

/// Keeps a run's job lease for as long as its devices are being driven.
///
/// The lease's advisory lock lives in one server session. When the registry restarts or fails
/// over to its standby, that session is gone and nobody holds the lock, while this run's writes
/// still pass the fence (the epoch was replicated with the job row). So once a second it checks
/// the lease's session (`JobLease.confirm()`), and when the registry is back on a new session it
/// takes the lock again: a second `--resume` of the job is then refused (`jobInUse`) instead of
/// taking over a job whose devices this run is still driving. Should the job have been taken
/// meanwhile, the run is stopped at the next step boundary and reports the lost lease.
final class JobLeaseKeeper: @unchecked Sendable {
    /// How often the lease's session is checked: a query a second on one connection.
    static let interval: Duration = .seconds(1)

    private let lock = NSLock()
    private var lostError: JobLeaseError?
    private var task: Task<Void, Never>?

    /// The lease this run lost, if it did.
    var lost: JobLeaseError? { lock.withLock { lostError } }

    init(lease: JobLease, stop: StopSignal, emit: @escaping ProvisioningEventSink) {
        task = Task { [self] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: Self.interval) } catch { return }
                do {
                    if try await lease.confirm() == .retaken {
                        emit(ProvisioningEvent(type: .note, jobID: lease.jobID,
                                               message: "the registry is back on a new session: job \(lease.jobID)'s lease (epoch \(lease.epoch)) taken again"))
                    }
                } catch let error as JobLeaseError {
                    lock.withLock { lostError = error }
                    emit(ProvisioningEvent(type: .note, jobID: lease.jobID, message: "\(error)"))
                    stop.requestStop()
                    return
                } catch {
                    // The registry is away: the devices hold on their own writes; check again later.
                }
            }
        }
    }

    /// Stops checking and waits until the check in progress is over (before the lease is
    /// released: a check after the release would take the lock again).
    func finish() async {
        task?.cancel()
        await task?.value
    }
}
