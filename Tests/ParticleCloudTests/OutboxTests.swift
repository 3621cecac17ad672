import Foundation
import Testing
@testable import ParticleCloud
import Registry
import TestSupport

@Suite("The cloud outbox in PostgreSQL")
struct OutboxTests {
    @Test("An upload is queued in the registering transaction, once per key, and only when asked")
    func queuedWithRegistration() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let fixture = try await OutboxFixture.make(registry)
            let registered = try await fixture.register(1)
            try await fixture.register(2, queue: false)
            let uploads = try await registry.cloudUploads()
            #expect(uploads.count == 1)
            #expect(uploads.first?.registrationID == registered.id)
            #expect(uploads.first?.state == .pending)
            #expect(uploads.first?.fingerprint == registered.fingerprint)
            #expect(uploads.first?.attempts == 0 && uploads.first?.lastStatus == nil)
            // Queuing the same registration again (keys send of a registered key) adds nothing.
            let again = try await registry.queueCloudUpload(of: registered, station: OutboxFixture.station)
            #expect(again.id == uploads.first?.id)
            #expect(try await registry.cloudUploads().count == 1)
        }
    }

    @Test("A key revoked or superseded while its upload waited is parked, never sent")
    func inactiveKeysAreNotSent() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let fixture = try await OutboxFixture.make(registry)
            try await fixture.register(11)
            try await fixture.register(12)
            _ = try await registry.revokeKey(productID: OutboxFixture.product, deviceID: OutboxFixture.deviceID(11),
                                             reason: "compromised", station: OutboxFixture.station)
            let claimed = try await registry.claimCloudUploads(limit: 10, lease: .seconds(60))
            #expect(claimed.map(\.upload.deviceID) == [OutboxFixture.deviceID(12)])
            let parked = try await registry.cloudUploads(state: .parked, deviceID: OutboxFixture.deviceID(11))
            #expect(parked.count == 1)
            #expect(parked.first?.reason?.contains("no longer active (revoked)") == true)
        }
    }

    @Test("A failed registration queues nothing")
    func rolledBackTogether() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let fixture = try await OutboxFixture.make(registry)
            let first = try await fixture.register(3)
            var duplicate = NewKeyRegistration(productID: OutboxFixture.product, deviceID: OutboxFixture.deviceID(4),
                                               algorithm: .ec, spkiDER: first.spkiDER, fingerprint: first.fingerprint,
                                               escrowObjectID: first.escrowObjectID, jobID: nil, station: OutboxFixture.station)
            duplicate.queueCloudUpload = true
            await #expect(throws: (any Error).self) {
                _ = try await registry.registerKey(duplicate, superseding: false, reason: "test")
            }
            #expect(try await registry.cloudUploads(deviceID: OutboxFixture.deviceID(4)).isEmpty)
        }
    }

    @Test("A sent upload is never sent again: claims skip it and the database refuses to reopen it")
    func sentStaysSent() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let fixture = try await OutboxFixture.make(registry)
            try await fixture.register(5)
            let claimed = try await registry.claimCloudUploads(limit: 10, lease: .seconds(60))
            #expect(claimed.count == 1)
            #expect(claimed.first?.upload.attempts == 1)
            // Leased: a second drainer does not take it.
            #expect(try await registry.claimCloudUploads(limit: 10, lease: .seconds(60)).isEmpty)
            let upload = try #require(claimed.first?.upload)
            try await registry.recordCloudUploadAttempt(upload, outcome: .sent, status: 200, requestID: "r1",
                                                        reason: nil, station: OutboxFixture.station)
            // A late duplicate's retry record does not reopen it.
            #expect(try await registry.recordCloudUploadAttempt(upload, outcome: .retry(after: .zero), status: 503,
                                                                requestID: "r2", reason: "late", station: "s") == nil)
            #expect(try await registry.cloudUploads(state: .sent).count == 1)
            await #expect(throws: (any Error).self) {
                _ = try await registry.client.execute("UPDATE cloud_uploads SET state = 'pending', sent_at = NULL", [])
            }
            await #expect(throws: (any Error).self) {
                _ = try await registry.client.execute("DELETE FROM cloud_uploads", [])
            }
            #expect(try await registry.requeueParkedCloudUploads() == 0)
            #expect(try await registry.claimCloudUploads(limit: 10, lease: .zero).isEmpty)
        }
    }
}
