import DeviceBus
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// Issue 21, "Many stations, one registry": four station processes — four logins bound to four
/// station names, four simulated fleets on four stand-in sockets — provision at once into one
/// PostgreSQL database and one S3 bucket, and share one simulated Particle cloud. One device ID is
/// plugged in at two stations (the cross-station conflict), and one station is killed mid-batch
/// and resumed while the others run. Afterwards every invariant is checked from the registry, the
/// store (decrypting), the devices, the cloud and what each process printed.
@Suite("Many stations, one registry", .serialized)
struct ManyStationsTests {
    static let perStation = 6
    static let token = "many-stations-particle-token-5d21"

    @Test("4 station logins and fleets, one registry, one S3 bucket, one cloud: a shared device, a kill and a resume; every invariant holds",
          .enabled(if: TestPostgres.trustsNewLogins, "new logins connect without a password only on the local cluster's socket"),
          .timeLimit(.minutes(10)))
    func fourStations() async throws {
        let cloud = try SimulatedCloud(token: Self.token)
        let cloudServer = try await SimulatedCloudServer(cloud: cloud)
        // Station 2's first port holds a device with the ID of station 1's first device.
        let shared = SimulatedFleet.plannedSharedID(seed: 71, port: ProvisionTests.port(1, 1))
        let fleets: [(SimulatedFleet) throws -> Void] = (0..<4).map { station in
            { fleet in
                for index in 1...Self.perStation {
                    let port = ProvisionTests.port(1, index)
                    try fleet.add(.photon, at: port, mode: .dfu, deviceID: station == 1 && index == 1 ? shared : nil)
                }
            }
        }
        let many = try await ManyStationsLine(seed: 71, fleets: fleets)
        // Stopped here rather than in a defer: a Task started by a defer may never run before the
        // test process exits, and the logins would outlive the test.
        var failure: (any Error)?
        do {
            let line = many.line
            try await ProvisionS3Tests.useS3(line)
            many.setEverywhere(line.environment.filter { $0.key.hasPrefix("AWS_") || $0.key == "KEYLINE_ESCROW_STORE" })
            many.setEverywhere(["PARTICLE_API_URL": cloudServer.url, "PARTICLE_ACCESS_TOKEN": Self.token])
            for station in many.stations {
                try await waitUntil("\(station.name)'s \(Self.perStation) devices attached") {
                    station.fleet.attachedDevices().count >= Self.perStation
                }
            }
            #expect(many.stations[0].fleet.allDevices.contains { $0.device.deviceID == shared })
            // The cloud section only bounds the end-of-job wait for uploads (a killed run's claimed
            // upload is leased for 90 s); the token and API URL come from the environment.
            let pipeline = line.scratch.url.appendingPathComponent("photon-many.yaml").path
            try (String(contentsOfFile: ProvisionLine.pipeline("photon-factory.yaml"), encoding: .utf8)
                 + "\ncloud:\n  drain_timeout: 15s\n").write(toFile: pipeline, atomically: true, encoding: .utf8)
            let product = try ProvisionLine.productID(pipeline)
            _ = try await line.registry().createProduct(id: product, name: "Photon factory", platform: "photon")

            // Three stations run to the end; the fourth (two devices at a time, so a batch is surely
            // under way) is killed once a device is done, then resumed while the others may still run.
            let killed = many.stations[3]
            let registry = try await line.registry()
            var results: [Int: ChildProcess.Result] = [:]
            var killedRun = KilledRun(jobID: nil, doneBeforeKill: [])
            try await withThrowingTaskGroup(of: (Int, ChildProcess.Result?, KilledRun?).self) { group in
                for index in 0..<3 {
                    let environment = many.stations[index].environment
                    group.addTask {
                        (index, try await ChildProcess.run(Subprocess.keyline, ["provision", pipeline, "--json"],
                                                           environment: environment, timeout: .seconds(300)), nil)
                    }
                }
                group.addTask {
                    let first = try BackgroundProvision(arguments: ["provision", pipeline, "--json", "--concurrency", "2"],
                                                        environment: killed.environment,
                                                        output: line.scratch.url.appendingPathComponent("killed-run.jsonl"))
                    try await waitUntil(deadline: .seconds(240), "a device done at \(killed.name)") {
                        first.events().contains { $0["type"] as? String == "device_finished" && $0["outcome"] as? String == "done" }
                            || !first.process.isRunning
                    }
                    let landed = await first.kill()
                    #expect(landed, "\(killed.name)'s run ended before the kill")
                    let run = KilledRun(first.events())
                    let job = try #require(run.jobID)
                    // The killed session's lease (an advisory lock) goes with its backend: wait for it.
                    try await waitUntil(deadline: .seconds(60), "\(killed.login)'s sessions gone") {
                        try await registry.client.query("SELECT 1 FROM pg_stat_activity WHERE usename = $1", [killed.login]).isEmpty
                    }
                    let resumed = try await ChildProcess.run(Subprocess.keyline, ["provision", pipeline, "--json", "--resume", String(job)],
                                                             environment: killed.environment, timeout: .seconds(300))
                    return (3, resumed, run)
                }
                for try await (index, result, run) in group {
                    if let result { results[index] = result }
                    if let run { killedRun = run }
                }
            }
            let summaries = try (0..<4).map { try ManyStationsLine.summary(try #require(results[$0])) }
            let rows = try await many.jobDevices()
            try await ManyStationsChecks(many: many, product: product, shared: shared, cloud: cloud)
                .check(results: results, summaries: summaries, rows: rows, killedRun: killedRun)
        } catch {
            failure = error
        }
        await many.stop()
        await cloudServer.stop()
        if let failure { throw failure }
    }
}

/// What the killed run printed before the kill: its job, and the devices it finished.
struct KilledRun: Sendable {
    let jobID: Int64?
    let doneBeforeKill: Set<String>

    init(jobID: Int64?, doneBeforeKill: Set<String>) {
        self.jobID = jobID
        self.doneBeforeKill = doneBeforeKill
    }

    init(_ events: [[String: Any]]) {
        jobID = (events.first { $0["type"] as? String == "job_started" }?["jobID"] as? NSNumber)?.int64Value
        doneBeforeKill = Set(events.filter { $0["type"] as? String == "device_finished" && $0["outcome"] as? String == "done" }
            .compactMap { $0["deviceID"] as? String })
    }
}

extension SimulatedFleet {
    /// The device ID a fleet of `seed` gives a Photon at `port` (the ID another fleet reuses).
    static func plannedSharedID(seed: UInt64, port: USBPortPath) -> String {
        (try? SimulatedFleet(timeScale: 0, seed: seed))?.plannedDeviceID(.photon, at: port) ?? ""
    }
}
