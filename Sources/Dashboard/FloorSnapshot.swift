import Foundation
import Registry

extension FloorDevice: FloorDeviceView {}

/// Everything the floor page shows, read from the registry in one go.
struct FloorSnapshot: Sendable {
    struct Tile: Sendable {
        enum State: String, Sendable { case idle, running, done, failed, notPermitted = "not-permitted" }
        var port: String
        var name: String?
        var device: FloorDevice?
        var notPermitted: PortNotPermitted?
        var state: State
        var step: FloorStep?
    }

    struct Station: Sendable {
        var name: String
        var job: Job?
        var heartbeat: StationStatus?
        var tiles: [Tile]
        /// This shift's and the last shift's output (nil: nothing finished).
        var current: StationOutput?
        var previous: StationOutput?
    }

    struct Alarm: Sendable, Equatable {
        /// `store`, `registry`, `cloud`, `port-failures`, `silent` (the `data-alarm` value).
        var kind: String
        var station: String?
        var port: String?
        var message: String
    }

    var takenAt: Date
    var shift: Shift
    var stations: [Station]
    var alarms: [Alarm]

    /// Alarm thresholds (design: issue 23).
    static let consecutiveFailures = 3
    static let silentAfter: TimeInterval = 15
    static let cloudOverdueAfter: TimeInterval = 300
    /// How far back a port's "not permitted" is shown when its station runs no job.
    static let notPermittedWindow: TimeInterval = 8 * 3600

    /// A floor with only the registry alarm: what viewers see while the registry is away.
    static func unreachable(_ reason: String, previous: FloorSnapshot?) -> FloorSnapshot {
        var snapshot = previous ?? FloorSnapshot(takenAt: Date(), shift: .containing(Date()), stations: [], alarms: [])
        snapshot.alarms.removeAll { $0.kind == "registry" }
        snapshot.alarms.insert(Alarm(kind: "registry", station: nil, port: nil,
                                     message: "registry unreachable: \(reason) (the floor below is as last seen)"), at: 0)
        return snapshot
    }

    static func load(from registry: RegistryDatabase) async throws -> FloorSnapshot {
        let now = try await registry.databaseNow()
        let shift = Shift.containing(now)
        let jobs = try await registry.floorJobs()
        let statuses = try await registry.stationStatuses()
        let devices = try await registry.floorDevices(jobIDs: jobs.map(\.id))
        let refused = try await registry.portsNotPermitted(since: now.addingTimeInterval(-notPermittedWindow))
        let current = try await registry.stationOutput(from: shift.start, to: shift.end)
        let previous = try await registry.stationOutput(from: shift.previous.start, to: shift.start)
        let cloud = try await registry.cloudBacklog(overdueAfter: cloudOverdueAfter)
        let streaks = try await registry.portFailureStreaks(count: consecutiveFailures)

        let jobByStation = Dictionary(jobs.map { ($0.station, $0) }, uniquingKeysWith: { first, _ in first })
        let statusByStation = Dictionary(statuses.map { ($0.station, $0) }, uniquingKeysWith: { first, _ in first })
        let names = Set(jobs.map(\.station)).union(statuses.map(\.station)).sorted()
        let stations = names.map { name -> Station in
            let job = jobByStation[name]
            let heartbeat = statusByStation[name]
            let since = job?.startedAt ?? now.addingTimeInterval(-notPermittedWindow)
            let tiles = Self.tiles(configured: heartbeat?.ports ?? [],
                                   devices: devices.filter { $0.jobID == job?.id },
                                   refused: refused.filter { $0.station == name && $0.occurredAt >= since })
            return Station(name: name, job: job, heartbeat: heartbeat, tiles: tiles,
                           current: current.first { $0.station == name },
                           previous: previous.first { $0.station == name })
        }
        var alarms: [Alarm] = []
        for status in statuses where status.storeState != StationStatus.StoreState.ok.rawValue {
            alarms.append(Alarm(kind: "store", station: status.station, port: nil,
                                message: "station \(status.station): escrow store \(status.storeState)"
                                    + (status.storeDetail.map { ": \($0)" } ?? "")))
        }
        for status in statuses {
            guard let jobID = status.jobID, let job = jobByStation[status.station], job.id == jobID,
                  job.status == .running, status.secondsSinceSeen > silentAfter else { continue }
            alarms.append(Alarm(kind: "silent", station: status.station, port: nil,
                                message: "station \(status.station) silent for \(Int(status.secondsSinceSeen)) s while job \(jobID) runs"))
        }
        if cloud.parked > 0 || cloud.overdue > 0 {
            alarms.append(Alarm(kind: "cloud", station: nil, port: nil,
                                message: "cloud uploads: \(cloud.pending) pending (\(cloud.overdue) for over \(Int(cloudOverdueAfter / 60)) min), "
                                    + "\(cloud.parked) parked (`keyline cloud status`)"))
        }
        for streak in streaks {
            alarms.append(Alarm(kind: "port-failures", station: streak.station, port: streak.port,
                                message: "station \(streak.station) port \(streak.port): the last \(streak.count) devices failed "
                                    + "(check the cable or pogo pins)"))
        }
        return FloorSnapshot(takenAt: now, shift: shift, stations: stations, alarms: alarms)
    }

    /// One tile per port: the jig's ports in their order, then any other port a device or a
    /// refusal was seen on.
    static func tiles(configured: [StationPort], devices: [FloorDevice], refused: [PortNotPermitted]) -> [Tile] {
        var order = configured.map(\.path)
        let seen = Set(order)
        let others = Set(devices.map { $0.portPath ?? "-" }).union(refused.map(\.port)).subtracting(seen)
        order += others.sorted()
        return order.map { port in
            let name = configured.first { $0.path == port }?.name
            if let device = devices.first(where: { ($0.portPath ?? "-") == port }) {
                let state: Tile.State = device.state == "failed" ? .failed : device.state == "done" ? .done : .running
                return Tile(port: port, name: name, device: device, notPermitted: nil, state: state,
                            step: FloorStep.position(of: device))
            }
            if let refusal = refused.first(where: { $0.port == port }) {
                return Tile(port: port, name: name, device: nil, notPermitted: refusal, state: .notPermitted, step: nil)
            }
            return Tile(port: port, name: name, device: nil, notPermitted: nil, state: .idle, step: nil)
        }
    }
}
