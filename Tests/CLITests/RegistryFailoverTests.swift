import DeviceBus
import Foundation
import Testing
import TestSupport

/// The registry of a factory is a primary with a streaming standby (synchronous replication).
/// A station reaches it through a libpq multi-host URL; the primary dies mid-batch and the standby
/// is promoted: the devices hold, then finish on the new primary, and nothing the station
/// believed written is lost or doubled.
@Suite("keyline provision: the registry fails over to its standby", .serialized)
struct RegistryFailoverTests {
    static let devices = 8

    static func states(_ events: [[String: Any]]) -> [String] {
        events.filter { $0["type"] as? String == "state_changed" }.compactMap { $0["state"] as? String }
    }

    @Test("the primary stopped mid-batch, the standby promoted: devices hold, finish on the new primary; nothing lost or doubled; the run keeps its lease",
          .timeLimit(.minutes(10)))
    func primaryStoppedMidBatch() async throws {
        try await PrimaryWithStandby.run(database: "keyline_failover") { pair in
            // Half the batch is attached at the start, the other half arrives while no server
            // takes writes: those devices cannot get past their first registry write before the
            // promotion however fast the first half is, so the failover always lands mid-batch.
            let early = Self.devices / 2
            let line = try await ProvisionLine(timeScale: 0.05, seed: 211, registryURL: pair.url) { fleet in
                for index in 1...early {
                    try fleet.add(.photon, at: ProvisionLifecycleTests.port(1, index), mode: index.isMultiple(of: 2) ? .dfu : .normal)
                }
            }
            defer { Task { await line.stop() } }
            try await ProvisionS3Tests.waitForDevices(line, early)
            // Short back-offs, so a device held through the outage tries again soon after the promotion.
            let shipped = try String(contentsOfFile: ProvisionLine.pipeline("photon-factory.yaml"), encoding: .utf8)
            let pipeline = line.scratch.url.appendingPathComponent("photon-failover.yaml")
            try shipped.replacingOccurrences(of: "max_backoff: 30s", with: "max_backoff: 1s")
                .write(to: pipeline, atomically: true, encoding: .utf8)
            let product = try ProvisionLine.productID(pipeline.path)

            // `--wait`: the run ends when the test stops it (SIGTERM, as `systemctl stop` does), not
            // when its devices are done, so the lease checks below always meet a running run.
            let run = try RunningKeyline(line, ["provision", pipeline.path, "--wait", "--json", "--timeout", "20"], label: "failover")
            // A failing expectation further down must not leave the run behind (a no-op once it exited).
            defer { run.signal(SIGKILL) }
            // Some devices past `escrowed` (their escrow records and maybe registrations are on
            // the primary and, synchronously, on the standby).
            let escrowed = try await run.waitForEvents(within: .seconds(180)) { Self.states($0).filter { $0 == "escrowed" }.count >= 2 }
            try #require(escrowed, "no device reached escrowed\n\(run.stderr)\n\(run.stdout.suffix(3000))")
            let job = try #require(run.events.first { $0["type"] as? String == "job_started" }?["jobID"] as? Int)
            try await pair.stopPrimary()
            for index in (early + 1)...Self.devices {
                try line.fleet.add(.photon, at: ProvisionLifecycleTests.port(1, index), mode: index.isMultiple(of: 2) ? .dfu : .normal)
            }

            // A second run of the job while no server takes writes: refused at once, nothing touched.
            let resume = ["provision", pipeline.path, "--json", "--timeout", "20", "--resume", String(job)]
            let duringOutage = try await line.keyline(resume, timeout: .seconds(180))
            #expect(duringOutage.status == 75, "\(duringOutage.stderr)\n\(duringOutage.stdout.suffix(2000))")

            let held = try await run.waitForEvents(within: .seconds(120)) { $0.contains { $0["type"] as? String == "held" } }
            #expect(held, "no device was held while no server took writes\n\(run.stderr)\n\(run.stdout.suffix(3000))")
            #expect(run.process.isRunning, "the run ended during the outage: \(run.stderr)")

            try await pair.promoteStandby()
            // The run takes its job's lease again on the new primary (the advisory lock died with the
            // old one); from then on a second run of the job is refused, not let in to drive it too.
            let retaken = try await run.waitForEvents(within: .seconds(120)) {
                $0.contains { ($0["message"] as? String ?? "").contains("taken again") }
            }
            #expect(retaken, "the run never took its lease again\n\(run.stderr)\n\(run.stdout.suffix(3000))")
            #expect(try await pair.psql(socket: pair.standbySocket, """
                SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted
                  AND classid = \(0x6B6C_6A62) AND objsubid = 2 AND objid = \(job)
                """).trimmingCharacters(in: .whitespacesAndNewlines) == "1", "no session holds job \(job)'s lock on the new primary")
            let afterFailover = try await line.keyline(resume, timeout: .seconds(180))
            #expect(afterFailover.status == 75 && (afterFailover.stderr + afterFailover.stdout).contains("is being run by another"),
                    "a second run of job \(job) was let in after the failover\n\(afterFailover.stderr)\n\(afterFailover.stdout.suffix(2000))")
            #expect(!afterFailover.stdout.contains("\"type\":\"state_changed\""), "the second run drove a device\n\(afterFailover.stdout.suffix(2000))")

            let allFinished = try await run.waitForEvents(within: .seconds(240)) {
                $0.filter { $0["type"] as? String == "device_finished" }.count >= Self.devices
            }
            #expect(allFinished, "not every device finished\n\(run.stderr)\n\(run.stdout.suffix(3000))\n\(pair.logs)")
            run.signal(SIGTERM)
            let result = try await run.finish(within: .seconds(120))
            #expect(result.status == 0 && !result.terminatedBySignal, "\(result.stderr)\n\(result.stdout.suffix(3000))\n\(pair.logs)")
            let summary = try #require(ProvisionLine.summary(result))
            let reports = summary["devices"] as? [[String: Any]] ?? []
            #expect(reports.filter { $0["outcome"] as? String == "done" }.count == Self.devices, "\(reports)")
            // Each device finished once, done.
            let finished = ProvisionLine.events(result).filter { $0["type"] as? String == "device_finished" }
            #expect(finished.count == Self.devices && finished.allSatisfy { $0["outcome"] as? String == "done" }, "\(finished)")
            #expect(Set(finished.compactMap { $0["deviceID"] as? String }).count == Self.devices)

            // Every invariant, from the new primary.
            try await line.checkInvariants(product: product, devices: line.fleet.allDevices.map(\.device))
            #expect(try await line.registry().job(id: Int64(job))?.status == .completed)
            let newPrimary = pair.standbySocket
            func count(_ sql: String) async throws -> Int {
                Int(try await pair.psql(socket: newPrimary, sql).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
            }
            #expect(try await count("SELECT count(*) FROM job_devices WHERE job_id = \(job) AND state = 'done'") == Self.devices)
            #expect(try await count("SELECT count(*) FROM job_devices WHERE job_id = \(job)") == Self.devices)
            // No doubled rows: one escrow object, one intent, one registration, at most one cloud
            // upload per device; one `key.registered` event per registration, naming it.
            #expect(try await count("SELECT count(*) FROM escrow_objects WHERE job_id = \(job)") == Self.devices)
            #expect(try await count("SELECT count(DISTINCT device_id) FROM escrow_objects WHERE job_id = \(job)") == Self.devices)
            #expect(try await count("SELECT count(*) FROM escrow_intents WHERE job_id = \(job) AND committed_object_id IS NOT NULL") == Self.devices)
            #expect(try await count("SELECT count(*) FROM key_registrations WHERE job_id = \(job)") == Self.devices)
            #expect(try await count("SELECT count(*) FROM key_registrations WHERE job_id = \(job) AND status = 'active'") == Self.devices)
            #expect(try await count("""
                SELECT count(*) FROM key_registrations r JOIN escrow_objects e ON e.id = r.escrow_object_id
                WHERE r.job_id = \(job) AND e.device_id = r.device_id AND e.public_key_sha256 = r.fingerprint
                """) == Self.devices)
            #expect(try await count("SELECT count(*) - count(DISTINCT registration_id) FROM cloud_uploads") == 0)
            #expect(try await count("SELECT count(*) FROM events WHERE job_id = \(job) AND kind = 'key.registered'") == Self.devices)
            #expect(try await count("""
                SELECT count(*) FROM events e JOIN key_registrations r ON r.id = (e.detail->>'registration_id')::bigint
                WHERE e.job_id = \(job) AND e.kind = 'key.registered' AND r.device_id = e.device_id AND r.fingerprint = e.detail->>'fingerprint'
                """) == Self.devices)
            // A step's try recorded once, even when its COMMIT's outcome was unknown and it was sent again.
            #expect(try await count("""
                SELECT count(*) FROM (SELECT 1 FROM job_device_steps WHERE job_id = \(job)
                                      GROUP BY device_id, step, started_at, attempts, outcome HAVING count(*) > 1) doubled
                """) == 0)

            // The auditor's view agrees: every registration backed by an intact, decryptable backup.
            let audit = try await line.keyline(["audit", "--product", product, "--check-store", "--decrypt",
                                                "--identity", line.identity.path])
            #expect(audit.status == 0, "\(audit.stderr)\n\(audit.stdout.suffix(3000))")
        }
    }
}
