import Age
import DeviceBus
import DeviceKeys
import Escrow
import Foundation
import ParticlePlatform
import Provisioning
import Registry
import Simulator
import Testing
import TestSupport

/// Issue 21, items 1–4: a resume never completes a job with unfinished devices; a device with an
/// active key in another product is never touched; an operator can abandon (and re-open) a job
/// device, audited; a job lease another run took over fences the first run's writes out.
@Suite("Job trust: completion, products, abandonment, lease fence", .serialized)
struct JobTrustTests {
    static func runner(_ definition: PipelineDefinition, _ registry: RegistryDatabase, _ scratch: ScratchDirectory,
                       _ fleet: SimulatedFleet, resume: Int64? = nil) -> ProvisioningRunner {
        ProvisioningRunner(definition: definition, registry: registry, store: DirectoryEscrowStore(root: scratch.file("store")),
                           bus: fleet, options: ProvisioningOptions(resumeJobID: resume, reenumerationTimeout: .seconds(2)),
                           stop: StopSignal(), events: { _ in })
    }

    /// A photon's device ID that no simulated bus will show.
    static func absentPhotonID(seed: UInt64) throws -> String {
        try SimulatedDevice(platform: .photon, seed: seed).deviceID
    }

    /// A job of the in-process pipeline's product with `deviceID` recorded (detected, then failed
    /// from dfu), as a stopped run leaves a device that never comes back.
    static func jobWithUnfinishedDevice(_ registry: RegistryDatabase, _ definition: PipelineDefinition,
                                        deviceID: String) async throws -> Job {
        _ = try await registry.createProduct(id: definition.product.id, name: definition.product.name, platform: "photon")
        let job = try await registry.createJob(productID: definition.product.id, station: definition.station,
                                               pipeline: definition.name)
        _ = try await registry.startJobDevice(jobID: job.id, deviceID: deviceID, platform: "photon",
                                              station: definition.station, portPath: "1-1.9")
        try await registry.advanceJobDevice(jobID: job.id, deviceID: deviceID, from: "detected", to: "dfu")
        try await registry.failJobDevice(jobID: job.id, deviceID: deviceID, from: "dfu", reason: "unplugged")
        return job
    }

    @Test("item 1: --resume with a device that never shows up does not complete the job; the run names it and fails",
          .timeLimit(.minutes(2)))
    func resumeWithMissingDeviceIsNotComplete() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "trust")
            let definition = try RunnerInProcessTests.pipeline(in: scratch, identity: X25519Identity.generate())
            let missing = try Self.absentPhotonID(seed: 9001)
            let job = try await Self.jobWithUnfinishedDevice(registry, definition, deviceID: missing)
            let fleet = try SimulatedFleet(timeScale: 0, seed: 77)
            try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [1, 1]), mode: .dfu)

            let summary = try await Self.runner(definition, registry, scratch, fleet, resume: job.id).run()
            let report = try #require(summary.devices.first { $0.deviceID == missing }, "\(summary.devices)")
            #expect(report.outcome == .failed)
            #expect(report.reason?.contains("did not appear") == true && report.reason?.contains("job abandon") == true,
                    "\(report.reason ?? "")")
            #expect(summary.verdict(waited: false, resumed: true) == .someDevicesFailed)
            #expect(try await registry.job(id: job.id)?.status == .failed)
            // The attached device was provisioned all the same.
            #expect(summary.devices.filter { $0.outcome == .done }.count == 1, "\(summary.devices)")
        }
    }

    @Test("item 2: a device with an active key in another product is refused before anything touches it",
          .timeLimit(.minutes(2)))
    func activeKeyInAnotherProductIsRefused() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "trust")
            let definition = try RunnerInProcessTests.pipeline(in: scratch, identity: X25519Identity.generate())
            let fleet = try SimulatedFleet(timeScale: 0, seed: 78)
            let device = try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [1, 1]), mode: .dfu)
            // Product "fleet-b" registered a key for this device (as its line would have).
            _ = try await registry.createProduct(id: "fleet-b", name: "Fleet B", platform: "photon")
            let key = try DevicePrivateKey.generate(.rsa)
            let object = try await registry.recordEscrowObject(NewEscrowObject(
                productID: "fleet-b", deviceID: device.deviceID, publicKeySHA256: key.publicKey.fingerprint,
                storeURI: "file:///elsewhere", objectKey: "fleet-b/\(device.deviceID)/\(key.publicKey.fingerprint).age",
                ciphertextSHA256: String(repeating: "a", count: 64), sizeBytes: 100, recipients: ["age1x"], jobID: nil,
                station: "b-line"))
            _ = try await registry.registerKey(NewKeyRegistration(
                productID: "fleet-b", deviceID: device.deviceID, algorithm: .rsa, spkiDER: key.publicKey.spkiDER,
                fingerprint: key.publicKey.fingerprint, escrowObjectID: object.id, jobID: nil, station: "b-line"))
            let before = device.privateKeySlot()

            let summary = try await Self.runner(definition, registry, scratch, fleet).run()
            let report = try #require(summary.devices.first)
            #expect(report.outcome == .failed && report.failedStep == .identify)
            #expect(report.reason?.contains("product fleet-b") == true, "\(report.reason ?? "")")
            // Untouched: no job record, no new key, the other product's key still the active one.
            #expect(try await registry.deviceRecords(deviceID: device.deviceID).isEmpty)
            #expect(device.privateKeySlot() == before)
            #expect(try await registry.activeRegistrations(deviceID: device.deviceID).map(\.productID) == ["fleet-b"])
        }
    }

    @Test("item 3: an abandoned device no longer blocks the resume; the job completes, the event and report say so; re-open undoes it",
          .timeLimit(.minutes(2)))
    func abandonAndReopen() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "trust")
            let definition = try RunnerInProcessTests.pipeline(in: scratch, identity: X25519Identity.generate())
            let stuck = try Self.absentPhotonID(seed: 9002)
            let job = try await Self.jobWithUnfinishedDevice(registry, definition, deviceID: stuck)
            let fleet = try SimulatedFleet(timeScale: 0, seed: 79)

            // While a run holds the job, nobody abandons its devices under it.
            let held = try #require(try await registry.leaseJob(job.id))
            await #expect(throws: ProvisioningError.jobInUse(job.id)) {
                _ = try await JobDeviceDecision.run(.abandon, jobID: job.id, deviceID: stuck, reason: "x",
                                                    station: definition.station, registry: registry)
            }
            await held.release()
            await #expect(throws: JobDeviceAbandonmentError.reasonRequired(jobID: job.id, deviceID: stuck)) {
                _ = try await JobDeviceDecision.run(.abandon, jobID: job.id, deviceID: stuck, reason: "  ",
                                                    station: definition.station, registry: registry)
            }
            let abandoned = try await JobDeviceDecision.run(.abandon, jobID: job.id, deviceID: stuck,
                                                            reason: "board cracked, scrapped (ticket 812)",
                                                            station: definition.station, registry: registry)
            #expect(abandoned.abandonedAt != nil && abandoned.state == "failed")
            let event = try #require(try await registry.events(jobID: job.id).last)
            #expect(event.kind == "job_device.abandoned" && event.deviceID == stuck)
            #expect(event.detail["reason"] == "board cracked, scrapped (ticket 812)" && event.detail["last_good_state"] == "dfu")
            #expect(!event.actor.isEmpty && event.station == definition.station)

            let summary = try await Self.runner(definition, registry, scratch, fleet, resume: job.id).run()
            #expect(summary.verdict(waited: false, resumed: true) == .done, "\(summary.devices)")
            #expect(try await registry.job(id: job.id)?.status == .completed)
            // Nobody moves an abandoned device, the owner included.
            await #expect(throws: (any Error).self) {
                try await registry.resumeJobDevice(jobID: job.id, deviceID: stuck)
            }

            // Re-opened: the job waits for it again.
            _ = try await JobDeviceDecision.run(.reopen, jobID: job.id, deviceID: stuck, reason: "found a spare board",
                                                station: definition.station, registry: registry)
            #expect(try await registry.events(jobID: job.id).last?.kind == "job_device.reopened")
            let again = try await Self.runner(definition, registry, scratch, fleet, resume: job.id).run()
            #expect(again.verdict(waited: false, resumed: true) == .someDevicesFailed)
            #expect(try await registry.job(id: job.id)?.status == .failed)
        }
    }

    @Test("item 4: after the lease is lost (the server dropped its session), a second run takes the job and the first run's writes are refused",
          .timeLimit(.minutes(2)))
    func leaseIsFenced() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            _ = try await registry.createProduct(id: "fence", name: "Fence")
            let job = try await registry.createJob(productID: "fence", station: "a", pipeline: "p")
            let device = try Self.absentPhotonID(seed: 9003)
            let first = try #require(try await registry.leaseJob(job.id))
            let firstRun = registry.fenced(by: first)
            _ = try await firstRun.startJobDevice(jobID: job.id, deviceID: device, platform: "photon", station: "a", portPath: nil)
            // Unfenced writes to a leased job are refused, even the owner's.
            await #expect(throws: JobLeaseError.self) {
                try await registry.advanceJobDevice(jobID: job.id, deviceID: device, from: "detected", to: "dfu")
            }

            // A database restart drops the first lease's session (its advisory lock with it).
            _ = try await registry.client.query("""
                SELECT pg_terminate_backend(pid) FROM pg_locks
                WHERE locktype = 'advisory' AND classid = 1802267234 AND objid = $1::integer::oid
                  -- pg_locks is the whole cluster's: only this test's database (parallel tests' jobs are 1 too).
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """, [Int32(job.id)])
            let second = try await waitForLease(registry, job.id)
            #expect(second.epoch == first.epoch + 1)
            let secondRun = registry.fenced(by: second)

            await #expect(throws: JobLeaseError.lost(jobID: job.id, epoch: first.epoch)) {
                try await firstRun.advanceJobDevice(jobID: job.id, deviceID: device, from: "detected", to: "dfu")
            }
            await #expect(throws: JobLeaseError.self) { _ = try await firstRun.finishJob(id: job.id, status: .completed) }
            await #expect(throws: JobLeaseError.self) { try await firstRun.requireLease() }
            try await secondRun.requireLease()
            try await secondRun.advanceJobDevice(jobID: job.id, deviceID: device, from: "detected", to: "dfu")
            #expect(try await registry.jobDevice(jobID: job.id, deviceID: device)?.state == "dfu")
            // Only the lock holder takes a new epoch.
            await #expect(throws: (any Error).self) {
                _ = try await registry.client.query("UPDATE jobs SET lease_epoch = lease_epoch + 1 WHERE id = $1", [job.id])
            }
            await second.release()
            await first.release()
        }
    }

    /// The terminated backend's lock goes once its process has exited: wait for it, with a deadline.
    private func waitForLease(_ registry: RegistryDatabase, _ jobID: Int64) async throws -> JobLease {
        var lease: JobLease?
        try await waitUntil(deadline: .seconds(30), poll: .milliseconds(50), "job \(jobID)'s lease to be free") {
            lease = try await registry.leaseJob(jobID)
            return lease != nil
        }
        return try #require(lease)
    }
}
