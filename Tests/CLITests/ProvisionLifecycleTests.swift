import DFU
import DeviceBus
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// `keyline provision` running in the background, for tests that act on it while it runs:
/// signals, the database going away, devices plugged in. Output goes to files in the line's
/// scratch folder so it can be read while the child runs; every wait has a deadline.
final class RunningKeyline: @unchecked Sendable {
    let process = Process()
    let stdoutFile: URL
    let stderrFile: URL

    init(_ line: ProvisionLine, _ arguments: [String], label: String) throws {
        stdoutFile = line.scratch.url.appendingPathComponent("\(label).stdout")
        stderrFile = line.scratch.url.appendingPathComponent("\(label).stderr")
        _ = FileManager.default.createFile(atPath: stdoutFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: Subprocess.keyline)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(line.environment) { _, new in new }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: stdoutFile)
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        try process.run()
    }

    var stdout: String { (try? String(contentsOf: stdoutFile, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }

    /// The JSON events written so far.
    var events: [[String: Any]] {
        stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Waits until `condition` holds on the events so far; false when the child exited or the
    /// deadline passed first.
    func waitForEvents(within limit: Duration, _ condition: ([[String: Any]]) -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if condition(events) { return true }
            if !process.isRunning { return condition(events) }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    func signal(_ number: Int32) {
        if process.isRunning { kill(process.processIdentifier, number) }
    }

    /// Waits for the child to exit; kills it and throws when it runs past `limit`.
    func finish(within limit: Duration) async throws -> ChildProcess.Result {
        let deadline = ContinuousClock.now + limit
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            await process.waitForExit()
            throw CLITestFailure("keyline \(process.arguments ?? []) did not finish within \(limit)\nstderr: \(stderr)\nstdout: \(stdout.suffix(3000))")
        }
        await process.waitForExit()
        return ChildProcess.Result(command: "keyline " + (process.arguments ?? []).joined(separator: " "),
                                   status: process.terminationStatus,
                                   terminatedBySignal: process.terminationReason == .uncaughtSignal,
                                   stdoutBytes: Array(stdout.utf8), stderrBytes: Array(stderr.utf8))
    }
}

/// The runner's life around a batch: the database going away and coming back, Ctrl-C and
/// `--resume`, and `--wait` for devices plugged in while it runs.
@Suite("keyline provision: database loss, Ctrl-C, --wait", .serialized)
struct ProvisionLifecycleTests {
    static func port(_ hub: UInt8, _ index: Int) -> USBPortPath { USBPortPath(bus: 1, ports: [hub, UInt8(index)]) }

    static func states(_ events: [[String: Any]]) -> [String] {
        events.filter { $0["type"] as? String == "state_changed" }.compactMap { $0["state"] as? String }
    }

    /// Makes only this line's database unreachable (the shared cluster keeps running for the
    /// other tests): new connections are refused and the open ones are terminated, as a server
    /// restart would do, until `over` returns (it waits for what the test needs to see while the
    /// database is away, not a fixed time a loaded host may spend elsewhere); then it is let back in.
    static func databaseOutage(_ line: ProvisionLine, until over: () async throws -> Void) async throws {
        try await DatabaseCLITests.psql("ALTER DATABASE \(line.database) ALLOW_CONNECTIONS false")
        do {
            try await DatabaseCLITests.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '\(line.database)'")
            try await over()
        } catch {
            try? await DatabaseCLITests.psql("ALTER DATABASE \(line.database) ALLOW_CONNECTIONS true")
            throw error
        }
        try await DatabaseCLITests.psql("ALTER DATABASE \(line.database) ALLOW_CONNECTIONS true")
    }

    /// The job is open and then the database goes away; the devices plugged in meanwhile go as
    /// far as they can without it and are held (not failed) until it returns, then finish. The
    /// devices arrive only once the database is gone (`--wait`): a batch already running could
    /// finish before a loaded host even got the outage started (it once did).
    @Test("the database going away mid-batch holds the devices; they finish when it returns")
    func databaseOutageMidBatch() async throws {
        let line = try await ProvisionLine(timeScale: 0.05, seed: 41) { _ in }
        defer { Task { await line.stop() } }
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")

        let run = try RunningKeyline(line, ["provision", pipeline, "--wait", "--devices", "6", "--json", "--timeout", "10"],
                                     label: "outage")
        let started = try await run.waitForEvents(within: .seconds(60)) { $0.contains { $0["type"] as? String == "job_started" } }
        try #require(started, "\(run.stderr)\n\(run.stdout.suffix(2000))")
        // The database stays away until a device says it is held (every device has to register,
        // so one will), and a moment longer so the others meet the outage too.
        var heldWhileAway = false
        try await Self.databaseOutage(line) {
            for index in 1...3 { try line.fleet.add(.photon, at: Self.port(1, index), mode: .dfu) }
            for index in 4...6 { try line.fleet.add(.photon, at: Self.port(1, index), mode: .normal) }
            heldWhileAway = try await run.waitForEvents(within: .seconds(90)) { $0.contains { $0["type"] as? String == "held" } }
            try await Task.sleep(for: .milliseconds(500))
        }
        #expect(heldWhileAway, "no device was held while the database was away\n\(run.stderr)\n\(run.stdout.suffix(2000))")

        let result = try await run.finish(within: .seconds(180))
        #expect(result.status == 0, "\(result.stderr)\n\(result.stdout.suffix(3000))")
        let events = ProvisionLine.events(result)
        #expect(!events.contains { $0["type"] as? String == "device_finished" && $0["outcome"] as? String == "failed" })
        let summary = try #require(ProvisionLine.summary(result))
        let reports = summary["devices"] as? [[String: Any]] ?? []
        #expect(reports.filter { $0["outcome"] as? String == "done" }.count == 6)
        try await line.checkInvariants(product: try ProvisionLine.productID(pipeline), devices: line.fleet.allDevices.map(\.device))
        let job = try #require(summary["jobID"] as? Int)
        #expect(try await line.registry().job(id: Int64(job))?.status == .completed)
    }

    @Test("Ctrl-C stops at a step boundary, exits 130, says how to resume; --resume finishes the job")
    func interruptAndResume() async throws {
        let line = try await ProvisionLine(timeScale: 0.05, seed: 42) { fleet in
            // One device 20× slower (a worn part): still flashing for seconds after the others
            // are, so Ctrl-C lands mid-batch however late a loaded host sends it.
            try fleet.add(.photon, at: Self.port(1, 1), mode: .dfu, faults: SimulatedFaults(slowdown: 20))
            try fleet.add(.photon, at: Self.port(1, 2), mode: .dfu)
            for index in 3...4 { try fleet.add(.photon, at: Self.port(1, index), mode: .normal) }
        }
        defer { Task { await line.stop() } }
        try await waitUntil(poll: .milliseconds(10), "line.fleet.attachedDevices().count >= 4") { line.fleet.attachedDevices().count >= 4 }
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")

        let run = try RunningKeyline(line, ["provision", pipeline, "--json", "--timeout", "10"], label: "interrupt")
        let flashed = try await run.waitForEvents(within: .seconds(60)) { Self.states($0).contains("flashed") }
        #expect(flashed, "no device was flashed\n\(run.stderr)\n\(run.stdout.suffix(2000))")
        run.signal(SIGINT)
        let result = try await run.finish(within: .seconds(60))
        #expect(result.status == 130 && !result.terminatedBySignal, "\(result.stderr)\n\(result.stdout.suffix(3000))")

        let summary = try #require(ProvisionLine.summary(result))
        let job = try #require(summary["jobID"] as? Int)
        #expect(summary["interrupted"] as? Bool == true)
        // It says how to go on: on stderr, and in each interrupted device's event.
        let resumeHint = "--resume \(job)"
        let interrupted = ProvisionLine.events(result).filter { $0["outcome"] as? String == "interrupted" }
        #expect(!interrupted.isEmpty)
        #expect(interrupted.allSatisfy { ($0["message"] as? String ?? "").contains(resumeHint) }, "\(interrupted)")
        #expect(result.stderr.contains(resumeHint), "\(result.stderr)")

        // Stopped at a step boundary: the job is still running, its devices between detected and done.
        let registry = try await line.registry()
        #expect(try await registry.job(id: Int64(job))?.status == .running)
        let rows = try await registry.jobDevices(jobID: Int64(job))
        #expect(rows.contains { $0.state != "done" }, "every device finished before the interrupt")
        #expect(rows.allSatisfy { $0.state != "failed" }, "\(rows.map { ($0.deviceID, $0.state, $0.lastError) })")
        #expect(rows.contains { !["detected", "done", "failed"].contains($0.state) }, "\(rows.map(\.state))")
        // Nothing half done: a device past key_ready holds the recorded key.
        try await line.expectRecordedKeysThenResume(job: job, pipeline: pipeline, rows: rows, registry: registry)
    }

    @Test("--wait provisions devices as they are plugged in (normal and DFU mode), skips another platform, stops after --devices")
    func waitForArrivals() async throws {
        let line = try await ProvisionLine(timeScale: 0.01, seed: 43) { _ in }
        defer { Task { await line.stop() } }
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")

        let run = try RunningKeyline(line, ["provision", pipeline, "--wait", "--devices", "3", "--json", "--timeout", "10"],
                                     label: "wait")
        let started = try await run.waitForEvents(within: .seconds(30)) { $0.contains { $0["type"] as? String == "job_started" } }
        #expect(started, "\(run.stderr)")
        // Nothing attached: it waits instead of exiting 69.
        try await Task.sleep(for: .milliseconds(500))
        #expect(run.process.isRunning, "exited with nothing attached: \(run.stderr)")

        // A Boron first: another platform, seen and left alone.
        try line.fleet.add(.boron, at: Self.port(2, 1), mode: .normal)
        let boron = try #require(line.fleet.device(at: Self.port(2, 1)))
        let skipped = try await run.waitForEvents(within: .seconds(30)) {
            $0.contains { $0["outcome"] as? String == "skipped" && $0["port"] as? String == "1-2.1" }
        }
        #expect(skipped, "the Boron was not reported as skipped\n\(run.stdout.suffix(2000))")
        let boronTransfers = boron.statistics.controlTransfers

        // Photons one after another, while it runs: normal mode, DFU mode, normal mode.
        try line.fleet.add(.photon, at: Self.port(1, 1), mode: .normal)
        let first = try #require(line.fleet.device(at: Self.port(1, 1)))
        let firstStarted = try await run.waitForEvents(within: .seconds(60)) {
            $0.contains { $0["type"] as? String == "state_changed" && $0["deviceID"] as? String == first.deviceID }
        }
        #expect(firstStarted, "the first Photon was not picked up\n\(run.stdout.suffix(2000))")
        try line.fleet.add(.photon, at: Self.port(1, 2), mode: .dfu)
        try await Task.sleep(for: .milliseconds(300))
        #expect(run.process.isRunning, "stopped before the third device: \(run.stderr)")
        try line.fleet.add(.photon, at: Self.port(1, 3), mode: .normal)

        let result = try await run.finish(within: .seconds(180))
        #expect(result.status == 0, "\(result.stderr)\n\(result.stdout.suffix(3000))")
        let summary = try #require(ProvisionLine.summary(result))
        let reports = summary["devices"] as? [[String: Any]] ?? []
        #expect(reports.filter { $0["outcome"] as? String == "done" }.count == 3, "\(reports)")
        #expect(reports.contains { $0["outcome"] as? String == "skipped" && $0["port"] as? String == "1-2.1" })
        let photons = line.fleet.allDevices.map(\.device).filter { $0.platform == .photon }
        #expect(photons.count == 3)
        try await line.checkInvariants(product: try ProvisionLine.productID(pipeline), devices: photons)
        // The Boron was never opened: no control transfer since it was seen, still in normal mode, no key registered.
        #expect(boron.statistics.controlTransfers == boronTransfers)
        #expect(boron.currentMode == .normal)
        let registrations = try await line.registry().registrations(productID: try ProvisionLine.productID(pipeline))
        #expect(!registrations.contains { $0.registration.deviceID == boron.deviceID })
    }
}
