import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// How the station package's unit stops a line: systemd sends one SIGTERM to `keyline provision
/// --wait` and waits TimeoutStopSec. It must stop at a step boundary and exit with a status the
/// unit counts as success (SuccessExitStatus=130 3).
@Suite("keyline provision --wait: SIGTERM (systemctl stop)", .serialized)
struct ProvisionStopTests {
    @Test("SIGTERM mid-batch stops every device at a step boundary and exits 130; --resume finishes the job")
    func sigtermMidBatch() async throws {
        let line = try await ProvisionLine(timeScale: 0.15, seed: 51) { _ in }  // slow enough that SIGTERM lands mid-batch on a loaded host
        defer { Task { await line.stop() } }
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")

        let run = try RunningKeyline(line, ["provision", pipeline, "--wait", "--json", "--timeout", "10"], label: "sigterm")
        let started = try await run.waitForEvents(within: .seconds(60)) { $0.contains { $0["type"] as? String == "job_started" } }
        try #require(started, "\(run.stderr)\n\(run.stdout.suffix(2000))")
        for index in 1...3 { try line.fleet.add(.photon, at: ProvisionLifecycleTests.port(1, index), mode: .dfu) }
        let flashed = try await run.waitForEvents(within: .seconds(90)) { ProvisionLifecycleTests.states($0).contains("flashed") }
        #expect(flashed, "no device was flashed\n\(run.stderr)\n\(run.stdout.suffix(2000))")
        run.signal(SIGTERM)
        let result = try await run.finish(within: .seconds(120))
        #expect(result.status == 130 && !result.terminatedBySignal, "\(result.stderr)\n\(result.stdout.suffix(3000))")

        let summary = try #require(ProvisionLine.summary(result))
        let job = try #require(summary["jobID"] as? Int)
        #expect(summary["interrupted"] as? Bool == true)
        #expect(result.stderr.contains("--resume \(job)"), "\(result.stderr)")
        let registry = try await line.registry()
        let rows = try await registry.jobDevices(jobID: Int64(job))
        #expect(rows.allSatisfy { $0.state != "failed" }, "\(rows.map { ($0.deviceID, $0.state, $0.lastError) })")
        #expect(rows.contains { $0.state != "done" }, "every device finished before SIGTERM")
        // A step boundary: a device past key_ready holds exactly the recorded key.
        try await line.expectRecordedKeysThenResume(job: job, pipeline: pipeline, rows: rows, registry: registry)
    }

    @Test("SIGTERM to an idle line (no device mid-way) completes its job and exits 0")
    func sigtermIdle() async throws {
        let line = try await ProvisionLine(timeScale: 0.01, seed: 52) { _ in }
        defer { Task { await line.stop() } }
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")

        let run = try RunningKeyline(line, ["provision", pipeline, "--wait", "--json", "--timeout", "10"], label: "sigterm-idle")
        let started = try await run.waitForEvents(within: .seconds(60)) { $0.contains { $0["type"] as? String == "job_started" } }
        try #require(started, "\(run.stderr)\n\(run.stdout.suffix(2000))")
        try line.fleet.add(.photon, at: ProvisionLifecycleTests.port(1, 1), mode: .dfu)
        let done = try await run.waitForEvents(within: .seconds(120)) {
            $0.contains { $0["type"] as? String == "device_finished" && $0["outcome"] as? String == "done" }
        }
        #expect(done, "\(run.stderr)\n\(run.stdout.suffix(2000))")
        run.signal(SIGTERM)
        let result = try await run.finish(within: .seconds(120))
        #expect(result.status == 0 && !result.terminatedBySignal, "\(result.stderr)\n\(result.stdout.suffix(3000))")
        let summary = try #require(ProvisionLine.summary(result))
        let job = try #require(summary["jobID"] as? Int)
        #expect(try await line.registry().job(id: Int64(job))?.status == .completed)
    }
}
