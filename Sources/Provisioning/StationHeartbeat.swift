import Foundation
import Registry

/// The runner's heartbeat (table `station_status`, schema 0014): every `interval` while a run
/// runs or waits for devices, and at once when the escrow store's hold starts or ends, the station
/// writes its job, the store's state and its jig's ports. The dashboard reads it for its alarms
/// ("store holding", "station silent while its job runs").
///
/// Best effort: a heartbeat the registry refuses or misses (an outage) is skipped, never a reason
/// to hold or fail a device. Several devices may hold on the store at once: the state is
/// `holding` while any of them does.
final class StationHeartbeat: @unchecked Sendable {
    let registry: RegistryDatabase
    let station: String
    let ports: [StationPort]
    let interval: Duration
    private let lock = NSLock()
    private var jobID: Int64?
    private var holders = 0
    private var storeDetail: String?
    private var changed = true
    private var task: Task<Void, Never>?

    init(registry: RegistryDatabase, station: String, ports: [StationPort], interval: Duration = .seconds(3)) {
        self.registry = registry
        self.station = station
        self.ports = ports
        self.interval = interval
    }

    /// Starts beating for `jobID` (once).
    func start(jobID: Int64) {
        lock.withLock {
            self.jobID = jobID
            guard task == nil else { return }
            task = Task { [self] in await beat() }
        }
    }

    /// A device waits for the store (`detail`: why, as the device's `held` event says it).
    func storeHolding(detail: String) {
        lock.withLock {
            holders += 1
            storeDetail = detail
            if holders == 1 { changed = true }
        }
    }

    /// A device that waited for the store goes on (or stops waiting).
    func storeReleased() {
        lock.withLock {
            holders = max(0, holders - 1)
            if holders == 0 {
                storeDetail = nil
                changed = true
            }
        }
    }

    /// Stops beating and writes a last heartbeat without a job: the run is over, so its silence
    /// from now on is no alarm.
    func stop() async {
        let running = lock.withLock { () -> Task<Void, Never>? in
            defer { task = nil }
            jobID = nil
            return task
        }
        running?.cancel()
        await running?.value
        await write()
    }

    private func beat() async {
        let step = Duration.milliseconds(250)
        var since = Duration.zero
        while !Task.isCancelled {
            let due = lock.withLock { () -> Bool in
                defer { changed = false }
                return changed
            } || since >= interval
            if due {
                await write()
                since = .zero
            }
            try? await Task.sleep(for: step)
            since += step
        }
    }

    private func write() async {
        let (job, holding, detail) = lock.withLock { (jobID, holders > 0, storeDetail) }
        _ = try? await registry.writeStationStatus(station: station, jobID: job, storeState: holding ? .holding : .ok,
                                                   storeDetail: holding ? detail : nil, ports: ports)
    }
}
