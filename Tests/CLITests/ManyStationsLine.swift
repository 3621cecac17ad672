import DeviceBus
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// Several stations on one registry and one object store (issue 21, "Many stations, one
/// registry"): the first station is a `ProvisionLine` (its database, escrow identity, firmware
/// and S3 bucket are everyone's), each further station brings its own simulated fleet behind its
/// own stand-in socket. Every station runs `keyline provision` as its own login, bound to its
/// own station name with `keyline db grant`, as a factory's stations would.
final class ManyStationsLine: @unchecked Sendable {
    struct Station: @unchecked Sendable {
        let name: String
        let login: String
        let fleet: SimulatedFleet
        /// Nil for the first station, whose server the `ProvisionLine` owns.
        let server: StandInServer?
        var environment: [String: String]
    }

    let line: ProvisionLine
    private(set) var stations: [Station] = []

    /// `fleets[i]` builds station i's fleet; station 0's is the line's own.
    init(seed: UInt64, fleets: [(SimulatedFleet) throws -> Void]) async throws {
        precondition(!fleets.isEmpty)
        line = try await ProvisionLine(seed: seed, fleets[0])
        let suffix = String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        for (index, build) in fleets.enumerated() {
            let name = "station-\(index + 1)"
            let login = "kl_many_\(suffix)_\(index + 1)"
            let fleet: SimulatedFleet
            var server: StandInServer?
            var environment = line.environment
            if index == 0 {
                fleet = line.fleet
            } else {
                fleet = try SimulatedFleet(timeScale: 0, seed: seed &+ UInt64(index) &* 1000)
                try build(fleet)
                let started = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet)
                try started.start()
                server = started
                environment.merge(try Subprocess.standInEnvironment(socket: started.socketPath)) { _, new in new }
            }
            environment["KEYLINE_STATION"] = name
            environment["PGUSER"] = login
            environment["KEYLINE_LOG_DIR"] = line.scratch.url.appendingPathComponent("logs-\(name)").path
            stations.append(Station(name: name, login: login, fleet: fleet, server: server, environment: environment))
        }
        for station in stations {
            try await DatabaseCLITests.psql("CREATE ROLE \(station.login) LOGIN")
            try await line.keyline(["db", "grant", station.login, "--role", "station", "--station", station.name]).requireSuccess()
        }
    }

    /// Sets `name` to `value` in every station's environment (after the line's was changed).
    func setEverywhere(_ values: [String: String]) {
        for index in stations.indices { stations[index].environment.merge(values) { _, new in new } }
    }

    func stop() async {
        for station in stations { station.server?.stop() }
        await line.stop()
        for station in stations { try? await DatabaseCLITests.psql("DROP ROLE IF EXISTS \(station.login)") }
    }

    // MARK: What the runs printed

    /// A run's `--json` summary, decoded.
    static func summary(_ result: ChildProcess.Result) throws -> ProvisioningRunSummary {
        let summary = try #require(ProvisionLine.summary(result), "no summary in \(result.stdout.suffix(2000))\n\(result.stderr)")
        let job = try #require((summary["jobID"] as? NSNumber)?.int64Value)
        let devices = (summary["devices"] as? [[String: Any]] ?? []).compactMap { device -> ProvisioningRunSummary.Device? in
            guard let id = device["deviceID"] as? String, let outcome = device["outcome"] as? String else { return nil }
            return .init(deviceID: id, outcome: outcome, reason: device["reason"] as? String)
        }
        return ProvisioningRunSummary(jobID: job, station: summary["station"] as? String ?? "", devices: devices)
    }

    /// Every job device row of the registry: job → device → (state, last good state).
    func jobDevices() async throws -> [Int64: [String: (state: String, lastGood: String?)]] {
        var rows: [Int64: [String: (state: String, lastGood: String?)]] = [:]
        for row in try await line.registry().client.query("SELECT job_id, device_id, state, last_good_state FROM job_devices", []) {
            rows[try row.decode("job_id", as: Int64.self), default: [:]][try row.decode("device_id", as: String.self)] =
                (try row.decode("state", as: String.self), try row.decode("last_good_state", as: String?.self))
        }
        return rows
    }
}

/// What one `keyline provision --json` run said at its end.
struct ProvisioningRunSummary: Sendable {
    struct Device: Sendable {
        let deviceID: String
        let outcome: String
        let reason: String?
    }

    let jobID: Int64
    let station: String
    let devices: [Device]

    func outcome(of deviceID: String) -> Device? { devices.first { $0.deviceID == deviceID } }
}

/// A `keyline provision` started in the background, its stdout in a file the test reads as it
/// grows, so the test can kill it at a moment the run itself announces.
final class BackgroundProvision: @unchecked Sendable {
    let process = Process()
    let output: URL

    init(arguments: [String], environment: [String: String], output: URL) throws {
        self.output = output
        FileManager.default.createFile(atPath: output.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: Subprocess.keyline)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// The JSON events printed so far (a line still being written is left for the next read).
    func events() -> [[String: Any]] {
        guard let text = try? String(contentsOf: output, encoding: .utf8) else { return [] }
        return text.split(separator: "\n", omittingEmptySubsequences: true).compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    func kill() async -> Bool {
        let killed = process.isRunning && Foundation.kill(process.processIdentifier, SIGKILL) == 0
        await process.waitForExit()
        return killed && process.terminationReason == .uncaughtSignal
    }
}
