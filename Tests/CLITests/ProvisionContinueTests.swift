import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// `keyline provision --wait --continue`, as the station package's unit runs it: a line that
/// crashed (or was restarted by systemd) takes back the job its last run left running and
/// finishes those devices, instead of starting a new job that would refuse them
/// (`unfinishedElsewhere`) until somebody ran `--resume` by hand.
@Suite("keyline provision --continue: a restarted line takes its job back", .serialized)
struct ProvisionContinueTests {
    static let devices = 4

    @Test("a --wait line killed mid-batch, started again with --continue: the same job, every device done, no second job",
          .timeLimit(.minutes(10)))
    func killedLineContinues() async throws {
        let line = try await ProvisionLine(timeScale: 0.05, seed: 97) { fleet in
            // One part 20× slower (a worn one): still flashing when the others are flashed, so the
            // kill always finds a device unfinished, however late a loaded host sends it.
            try fleet.add(.photon, at: ProvisionLifecycleTests.port(1, 1), mode: .dfu, faults: SimulatedFaults(slowdown: 20))
            for index in 2...Self.devices {
                try fleet.add(.photon, at: ProvisionLifecycleTests.port(1, index), mode: index.isMultiple(of: 2) ? .dfu : .normal)
            }
        }
        defer { Task { await line.stop() } }
        try await ProvisionS3Tests.waitForDevices(line, Self.devices)
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")
        let arguments = ["provision", pipeline, "--wait", "--continue", "--json", "--timeout", "10"]

        // Nothing left running yet: --continue starts a job. Killed (a crash, a power cut) once a
        // device is flashed: the slow one is still flashing.
        let first = try RunningKeyline(line, arguments, label: "first")
        defer { first.signal(SIGKILL) }
        let flashed = try await first.waitForEvents(within: .seconds(120)) { ProvisionLifecycleTests.states($0).contains("flashed") }
        first.signal(SIGKILL)
        try #require(flashed, "no device was flashed\n\(first.stderr)\n\(first.stdout.suffix(2000))")
        _ = try await first.finish(within: .seconds(60))
        let started = try #require(first.events.first { $0["type"] as? String == "job_started" })
        let job = try #require(started["jobID"] as? Int)
        #expect(!(started["message"] as? String ?? "").contains("continuing"), "\(started)")
        let registry = try await line.registry()
        #expect(try await registry.job(id: Int64(job))?.status == .running)
        let leftUnfinished = try await registry.jobDevices(jobID: Int64(job)).filter(\.isUnfinished).map(\.deviceID)
        #expect(!leftUnfinished.isEmpty, "the kill found every device done: nothing left to continue")

        // The restart: the same job, taken back (once the server has dropped the killed run's
        // session: it waits for that); every device finishes in it.
        let second = try RunningKeyline(line, arguments, label: "second")
        defer { second.signal(SIGKILL) }
        let resumed = try await second.waitForEvents(within: .seconds(120)) { $0.contains { $0["type"] as? String == "job_started" } }
        try #require(resumed, "\(second.stderr)\n\(second.stdout.suffix(2000))")
        let restarted = try #require(second.events.first { $0["type"] as? String == "job_started" })
        #expect(restarted["jobID"] as? Int == job, "a new job was started instead: \(restarted)")
        #expect((restarted["message"] as? String ?? "").contains("continuing job \(job)"), "\(restarted)")
        try await waitUntil(deadline: .seconds(240), "every device of job \(job) done") {
            let rows = try await registry.jobDevices(jobID: Int64(job))
            return rows.count == Self.devices && rows.allSatisfy { $0.state == "done" }
        }
        second.signal(SIGTERM)
        let result = try await second.finish(within: .seconds(120))
        #expect(result.status == 0 && !result.terminatedBySignal, "\(result.stderr)\n\(result.stdout.suffix(3000))")
        #expect(!result.stdout.contains("\"outcome\":\"failed\""), "\(result.stdout.suffix(3000))")
        // Every device the crash left unfinished was driven by the second run.
        let driven = Set(ProvisionLine.events(result).filter { $0["type"] as? String == "state_changed" }.compactMap { $0["deviceID"] as? String })
        #expect(Set(leftUnfinished).isSubset(of: driven), "left unfinished: \(leftUnfinished); driven: \(driven)")

        #expect(try await registry.job(id: Int64(job))?.status == .completed)
        let product = try ProvisionLine.productID(pipeline)
        try await line.checkInvariants(product: product, devices: line.fleet.allDevices.map(\.device))
        // Job IDs are one identity sequence: a second job would be the next one.
        #expect(try await registry.job(id: Int64(job) + 1) == nil, "a second job was created")
    }

    @Test("--continue waits for a job a session holds and takes it once free; after --continue-wait it exits 75 instead of starting a second job; another pipeline's job is never taken",
          .timeLimit(.minutes(5)))
    func continueTakesOnlyItsOwnFreeJob() async throws {
        let line = try await ProvisionLine(timeScale: 0.05, seed: 98) { _ in }
        defer { Task { await line.stop() } }
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")
        func jobStarted(_ run: RunningKeyline) async throws -> [String: Any] {
            let started = try await run.waitForEvents(within: .seconds(120)) { $0.contains { $0["type"] as? String == "job_started" } }
            try #require(started, "\(run.stderr)\n\(run.stdout.suffix(2000))")
            return try #require(run.events.first { $0["type"] as? String == "job_started" })
        }
        func killedRun(_ pipeline: String, label: String) async throws -> Int {
            let run = try RunningKeyline(line, ["provision", pipeline, "--wait", "--json"], label: label)
            defer { run.signal(SIGKILL) }
            let job = try #require(try await jobStarted(run)["jobID"] as? Int)
            run.signal(SIGKILL)
            _ = try await run.finish(within: .seconds(60))
            return job
        }
        let registry = try await line.registry()

        // A job of another pipeline (same product, same station) left running by a killed run.
        let other = line.scratch.url.appendingPathComponent("photon-other.yaml")
        try String(contentsOfFile: pipeline, encoding: .utf8).replacingOccurrences(of: "name: photon-factory", with: "name: photon-other")
            .write(to: other, atomically: true, encoding: .utf8)
        let otherJob = try await killedRun(other.path, label: "other-pipeline")

        // This pipeline's job, left running, its lease held by a session that is not a run (as
        // the server keeps the session of a station that lost power until it finds it dead).
        let job = try await killedRun(pipeline, label: "killed")
        let ghost = try await PostgresConnection.connect(TestPostgres.settings.with(database: line.database))
        // The job lease's advisory lock: JobLease.lockClass ("kljb") and the job ID.
        try await waitUntil(deadline: .seconds(60), "the killed run's session gone, the ghost holding job \(job)'s lock") {
            try await ghost.query("SELECT pg_try_advisory_lock(\(0x6B6C_6A62), \(job)) AS locked").first?.decode("locked", as: Bool.self) == true
        }

        // While the ghost holds it: waited for, then exit 75 naming the job; no second job started.
        let refused = try await line.keyline(["provision", pipeline, "--wait", "--continue", "--continue-wait", "1", "--json"],
                                             timeout: .seconds(120))
        #expect(refused.status == 75, "\(refused.stderr)\n\(refused.stdout.suffix(2000))")
        #expect((refused.stdout + refused.stderr).contains("job \(job)"), "\(refused.stderr)\n\(refused.stdout.suffix(2000))")
        #expect(try await registry.job(id: Int64(job) + 1) == nil, "a second job was started beside the held one")

        // Waiting longer: it says so, and takes the job once the ghost's session lets go.
        let continuing = try RunningKeyline(line, ["provision", pipeline, "--wait", "--continue", "--continue-wait", "300", "--json"],
                                            label: "continue")
        defer { continuing.signal(SIGKILL) }
        let waiting = try await continuing.waitForEvents(within: .seconds(120)) {
            $0.contains { ($0["message"] as? String ?? "").contains("held by another session") }
        }
        #expect(waiting, "\(continuing.stderr)\n\(continuing.stdout.suffix(2000))")
        #expect(!continuing.events.contains { $0["type"] as? String == "job_started" }, "started while the job was held")
        await ghost.close()
        let started = try await jobStarted(continuing)
        #expect(started["jobID"] as? Int == job, "\(started)")
        #expect((started["message"] as? String ?? "").contains("continuing job \(job)"), "\(started)")

        continuing.signal(SIGTERM)
        let result = try await continuing.finish(within: .seconds(120))
        #expect(result.status == 0, "\(result.stderr)\n\(result.stdout.suffix(2000))")
        #expect(try await registry.job(id: Int64(otherJob))?.status == .running, "the other pipeline's job was touched")
        #expect(try await registry.job(id: Int64(job))?.status == .completed)
    }

    @Test("--continue with --resume is a usage error")
    func continueWithResumeIsRefused() async throws {
        let result = try await KeylineBinary.run(["provision", ProvisionLine.pipeline("photon-factory.yaml"), "--continue", "--resume", "1"])
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains("--continue and --resume"), "\(result.stderr)")
    }
}
