import Foundation
import Testing
@testable import Registry
import TestSupport

/// A run whose lease session died with the server (a restart, a failover to the standby) takes
/// the lock again on a new session, keeping its epoch; when another run took the job meanwhile,
/// it learns it lost the lease and does not keep the lock.
@Suite("Job lease: taken again after its session is lost", .serialized)
struct JobLeaseRetakeTests {
    /// Ends the session that holds job `jobID`'s lock, as a server going away does, and waits until
    /// the lock is gone (the backend drops it only once its process has exited).
    static func dropLeaseSession(_ registry: RegistryDatabase, _ jobID: Int64) async throws {
        let holders = """
            FROM pg_locks WHERE locktype = 'advisory' AND classid = 1802267234 AND objid = $1::integer::oid AND granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        _ = try await registry.client.query("SELECT pg_terminate_backend(pid) \(holders)", [Int32(jobID)])
        try await waitUntil(deadline: .seconds(60), poll: .milliseconds(20), "job \(jobID)'s lock released") {
            try await registry.client.query("SELECT 1 \(holders)", [Int32(jobID)]).isEmpty
        }
    }

    @Test("confirm: held while the session lives; retaken (same epoch) after it is lost, so a second run is refused",
          .timeLimit(.minutes(2)))
    func retakenAfterSessionLoss() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            _ = try await registry.createProduct(id: "retake", name: "Retake")
            let job = try await registry.createJob(productID: "retake", station: "a", pipeline: "p")
            let lease = try #require(try await registry.leaseJob(job.id))
            #expect(try await lease.confirm() == .held)

            try await Self.dropLeaseSession(registry, job.id)
            // Between the loss and the re-take nobody holds the lock (the gap the keeper closes).
            #expect(try await lease.confirm() == .retaken)
            #expect(try await lease.confirm() == .held)
            #expect(try await registry.leaseJob(job.id) == nil, "a second run took a job whose run had taken its lease again")
            try await registry.fenced(by: lease).requireLease()  // the epoch is still this run's
            await lease.release()
        }
    }

    @Test("confirm: lost when another run took the job while the session was gone; the lock is not kept",
          .timeLimit(.minutes(2)))
    func lostWhenTakenMeanwhile() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            _ = try await registry.createProduct(id: "retake", name: "Retake")
            let job = try await registry.createJob(productID: "retake", station: "a", pipeline: "p")
            let first = try #require(try await registry.leaseJob(job.id))
            try await Self.dropLeaseSession(registry, job.id)
            let second = try #require(try await registry.leaseJob(job.id))
            #expect(second.epoch == first.epoch + 1)
            // The second run holds the lock: the first cannot take it again.
            await #expect(throws: JobLeaseError.lost(jobID: job.id, epoch: first.epoch)) { _ = try await first.confirm() }
            // Once the second run has let go, the lock is free but the epoch has moved on: still lost,
            // and the first run does not keep the lock it briefly took to read the epoch.
            await second.release()
            await #expect(throws: JobLeaseError.lost(jobID: job.id, epoch: first.epoch)) { _ = try await first.confirm() }
            let third = try #require(try await registry.leaseJob(job.id), "the lost run kept the job's lock")
            #expect(third.epoch == second.epoch + 1)
            await third.release()
            await first.release()
        }
    }
}
