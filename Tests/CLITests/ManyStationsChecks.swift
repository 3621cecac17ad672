import DeviceKeys
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// The invariants of a many-station run, checked after every station has ended: from what each
/// process printed, the registry (as the administrator and as a read-only auditor), the S3 store
/// (read back and decrypted), every simulated device's key slot and the simulated cloud.
struct ManyStationsChecks {
    let many: ManyStationsLine
    let product: String
    /// The device ID plugged in at two stations.
    let shared: String
    let cloud: SimulatedCloud

    typealias Rows = [Int64: [String: (state: String, lastGood: String?)]]

    func check(results: [Int: ChildProcess.Result], summaries: [ProvisioningRunSummary], rows: Rows,
               killedRun: KilledRun) async throws {
        let registry = try await many.line.registry()
        var allIDs: Set<String> = []
        // What each process printed matches its job in the registry, device by device.
        for (index, station) in many.stations.enumerated() {
            let summary = summaries[index], result = try #require(results[index])
            let fleetIDs = Set(station.fleet.allDevices.map(\.device.deviceID))
            allIDs.formUnion(fleetIDs)
            let failed = summary.devices.contains { $0.outcome == "failed" }
            #expect(result.status == (failed ? 3 : 0), "\(station.name) exited \(result.status)\n\(result.stderr)\n\(result.stdout.suffix(3000))")
            #expect(summary.station == station.name)
            #expect(Set(summary.devices.map(\.deviceID)) == fleetIDs, "\(station.name) reported \(summary.devices.map(\.deviceID))")
            #expect(summary.devices.count == fleetIDs.count)
            let job = try await registry.job(id: summary.jobID)
            #expect(job?.station == station.name)
            #expect(job?.status == (failed ? .failed : .completed), "job \(summary.jobID) is \(String(describing: job?.status))")
            let jobRows = rows[summary.jobID] ?? [:]
            for device in summary.devices {
                let row = jobRows[device.deviceID]
                let reason = device.reason ?? ""
                switch device.outcome {
                case "done":
                    #expect(row?.state == "done", "\(station.name) printed \(device.deviceID) done; job \(summary.jobID) holds \(String(describing: row))")
                case "failed":
                    #expect(row == nil || row?.state == "failed", "\(station.name) printed \(device.deviceID) failed; the job holds \(String(describing: row))")
                case "skipped":
                    let doneHere = row?.state == "done" && reason.contains("already done in job \(summary.jobID)")
                    let doneElsewhere = row == nil && reason.contains("already provisioned")
                    #expect(doneHere || doneElsewhere, "\(station.name) skipped \(device.deviceID) (\(reason)); the job holds \(String(describing: row))")
                default:
                    Issue.record("\(station.name): \(device.deviceID) ended \(device.outcome): \(reason)")
                }
            }
            for deviceID in jobRows.keys {
                #expect(summary.outcome(of: deviceID) != nil, "job \(summary.jobID) holds \(deviceID), which \(station.name) never reported")
            }
        }
        #expect(allIDs.count == 4 * ManyStationsTests.perStation - 1)
        #expect(Set(rows.keys) == Set(summaries.map(\.jobID)), "jobs in the registry: \(rows.keys.sorted())")

        // Every device ID done in exactly one job; the shared one at one station, and the other
        // station said why not (a registration conflict, its record unfinished elsewhere, or
        // already provisioned), as the registry shows.
        var doneIn: [String: Int64] = [:]
        for id in allIDs {
            let jobs = rows.filter { $0.value[id]?.state == "done" }.map(\.key)
            #expect(jobs.count == 1, "device \(id) is done in jobs \(jobs)")
            doneIn[id] = jobs.first
        }
        let sharedAt = summaries.indices.filter { summaries[$0].outcome(of: shared) != nil }
        #expect(sharedAt == [0, 1])
        let winner = try #require(sharedAt.first { summaries[$0].jobID == doneIn[shared] })
        let loser = try #require(sharedAt.first { $0 != winner })
        let lost = try #require(summaries[loser].outcome(of: shared))
        let lostReason = lost.reason ?? ""
        let conflict = lost.outcome == "failed" && lostReason.contains("already has an active key in product \(product)")
        let unfinished = lost.outcome == "failed" && lostReason.contains("is unfinished in job \(summaries[winner].jobID)")
        let provisioned = lost.outcome == "skipped" && lostReason.contains("already provisioned")
        #expect(conflict || unfinished || provisioned, "\(many.stations[loser].name) on \(shared): \(lost.outcome) \(lostReason)")
        print("many stations: the shared device \(shared) went to \(many.stations[winner].name); "
              + "\(many.stations[loser].name) \(conflict ? "lost the registration" : unfinished ? "found it unfinished there" : "found it provisioned")")

        // The killed station: killed mid-batch, its job resumed and completed.
        let killedJob = summaries[3].jobID
        #expect(killedRun.jobID == killedJob)
        let doneBeforeKill = killedRun.doneBeforeKill
        #expect(!doneBeforeKill.isEmpty && doneBeforeKill.count < ManyStationsTests.perStation, "done before the kill: \(doneBeforeKill)")
        for id in doneBeforeKill {
            #expect(summaries[3].outcome(of: id)?.outcome == "skipped", "\(id), done before the kill, was run again")
        }

        // One active registration per device, each by the job (and station) that did it, each
        // backed by its own escrow object.
        let registrations = try await registry.client.query("""
            SELECT device_id, job_id, station, status, escrow_object_id FROM key_registrations WHERE product_id = $1
            """, [product])
        #expect(registrations.count == allIDs.count)
        var objects: Set<Int64> = []
        for row in registrations {
            let id: String = try row.decode("device_id")
            #expect(try row.decode("status", as: String.self) == "active")
            let job: Int64? = try row.decode("job_id")
            #expect(job == doneIn[id], "device \(id) registered by job \(String(describing: job)), done in \(String(describing: doneIn[id]))")
            let station = summaries.first { $0.jobID == job }?.station
            #expect(try row.decode("station", as: String.self) == station)
            #expect(objects.insert(try row.decode("escrow_object_id", as: Int64.self)).inserted)
        }
        let devices = many.stations.enumerated().flatMap { index, station in
            station.fleet.allDevices.map(\.device).filter { index == winner || $0.deviceID != shared }
        }
        try await many.line.checkInvariants(product: product, devices: devices)

        // The store holds every backup intact and only recorded objects; each decrypts to its key.
        let auditor = try await many.line.auditorEnvironment()
        let audit = try await many.line.keyline(["audit", "--product", product, "--check-store", "--decrypt",
                                                 "--identity", many.line.identity.path, "--format", "json"],
                                                environment: auditor.environment)
        try? await DatabaseCLITests.psql("DROP ROLE IF EXISTS \(auditor.role)")
        #expect(audit.status == 0, "\(audit.stderr)\n\(audit.stdout.suffix(3000))")
        #expect(try AuditTests.findings(audit).isEmpty, "\(audit.stdout.suffix(3000))")
        #expect((try AuditTests.document(audit)["registrations"] as? [[String: Any]])?.count == allIDs.count)

        try await checkCloud(registry: registry, killedJob: killedJob)
        // No private key of any station's devices in any output, log, file of the line or the database.
        let otherKeys = many.stations.dropFirst().flatMap { station in
            station.fleet.allDevices.compactMap { try? DevicePrivateKey(slot: $0.device.privateKeySlot()) }
        }
        try await many.line.expectNoKeyMaterial(in: Array(results.values), extraKeys: otherKeys)
    }

    /// One upload per registration; the cloud took each key it was sent once, and holds the
    /// registered key. An upload still pending is one the killed run had claimed (its lease runs).
    private func checkCloud(registry: RegistryDatabase, killedJob: Int64) async throws {
        let uploads = try await registry.client.query("""
            SELECT u.device_id, u.state, u.attempts, u.job_id, r.fingerprint FROM cloud_uploads u
            JOIN key_registrations r ON r.id = u.registration_id WHERE r.product_id = $1
            """, [product])
        let registered = try await registry.client.query("SELECT count(*) AS n FROM key_registrations WHERE product_id = $1", [product])
        #expect(uploads.count == (try registered.first?.decode("n", as: Int.self)))
        var sent = 0
        for row in uploads {
            let id: String = try row.decode("device_id")
            let state: String = try row.decode("state")
            let accepted = cloud.callCounts(for: id).keysAccepted
            #expect(accepted <= 1, "the cloud took \(id)'s key \(accepted) times")
            switch state {
            case "sent":
                sent += 1
                #expect(accepted == 1, "\(id)'s upload is recorded sent; the cloud took it \(accepted) times")
                #expect(cloud.record(for: id)?.fingerprint == (try row.decode("fingerprint", as: String.self)))
            case "pending":
                // Every line's drainer sends any due upload, whichever job queued it, so the killed
                // run may have claimed another job's. Its claim is an attempt counted and never
                // recorded: every recorded attempt is a `cloud.upload` event with its number (0013).
                let attempts: Int = try row.decode("attempts")
                let fingerprint: String = try row.decode("fingerprint")
                let job: Int64? = try row.decode("job_id")
                let recorded = try await registry.events(deviceID: id).contains {
                    $0.kind == "cloud.upload" && $0.detail["fingerprint"] == fingerprint && $0.detail["attempt"] == String(attempts)
                }
                #expect(attempts > 0 && !recorded,
                        "\(id)'s upload (job \(String(describing: job)); the killed run's was \(killedJob)) is still pending after attempt \(attempts), \(recorded ? "recorded" : "never claimed")")
            default:
                Issue.record("\(id)'s upload is \(state)")
            }
        }
        #expect(sent > 0)
        #expect(cloud.callCounts.keysAccepted <= uploads.count)
    }
}
