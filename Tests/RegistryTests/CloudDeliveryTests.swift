import Foundation
import Testing
@testable import Registry

/// 0013: no silent change of a cloud upload's delivery state, with real station logins.
@Suite("Cloud delivery audit")
struct CloudDeliveryTests {
    /// A registered key with its upload queued, written by the administrator.
    static func queued(_ admin: RegistryDatabase, _ fixture: RegistryFixture) async throws -> CloudUpload {
        let device = randomDeviceID()
        let key = try await TestKey.random(using: admin.connection)
        let object = try await fixture.escrowed(deviceID: device, key: key)
        var registration = fixture.registration(deviceID: device, key: key, escrowObjectID: object.id)
        registration.queueCloudUpload = true
        _ = try await admin.registerKey(registration)
        return try #require(try await admin.cloudUploads(deviceID: device).first)
    }

    static func uploadEvents(_ admin: RegistryDatabase, device: String) async throws -> [AuditEvent] {
        try await admin.events().filter { $0.kind == "cloud.upload" && $0.deviceID == device }
    }

    @Test("a station login cannot mark an upload sent without a 2xx answer to a claimed attempt; an unbound login changes nothing")
    func sentNeedsAcceptance() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let upload = try await Self.queued(admin, fixture)
            let (_, station) = try await database.login(memberOf: "keyline_station")
            let (_, unbound) = try await database.login(memberOf: "keyline_station", bound: false)

            // Never claimed: refused, with or without a status.
            for status in ["NULL", "200"] {
                await expectServerError("23514") {
                    try await station.connection.execute("""
                        UPDATE cloud_uploads SET state = 'sent', sent_at = now(), last_status = \(status) WHERE id = $1
                        """, [upload.id])
                }
            }
            // A claim may change nothing but the attempt count and the due time.
            await expectServerError("23514") {
                try await station.connection.execute(
                    "UPDATE cloud_uploads SET attempts = attempts + 1, state = 'sent', sent_at = now(), last_status = 200 WHERE id = $1",
                    [upload.id])
            }
            await expectServerError("42501") {
                try await unbound.connection.execute("UPDATE cloud_uploads SET attempts = attempts + 1 WHERE id = $1", [upload.id])
            }
            let claimed = try await station.claimCloudUploads(limit: 10, lease: .seconds(60))
            #expect(claimed.map(\.upload.id) == [upload.id])
            // Claimed, but the answer was a refusal: still not sent.
            await expectServerError("23514") {
                try await station.connection.execute(
                    "UPDATE cloud_uploads SET state = 'sent', sent_at = now(), last_status = 403 WHERE id = $1", [upload.id])
            }
            #expect(try await Self.uploadEvents(admin, device: upload.deviceID).isEmpty)
            #expect(try await admin.cloudUploads(deviceID: upload.deviceID).first?.state == .pending)
        }
    }

    @Test("every delivery change is an event the database writes, naming the login and its station, even by hand")
    func everyChangeIsAnEvent() async throws {
        try await withTestDatabase { database in
            let admin = try await database.registry()
            let fixture = try await RegistryFixture.make(admin)
            let upload = try await Self.queued(admin, fixture)
            let (user, station) = try await database.login(memberOf: "keyline_station")
            _ = try await station.claimCloudUploads(limit: 10, lease: .seconds(60))
            // A hand-made "accepted" (no request, no API call): allowed only as an audited change.
            try await station.connection.execute(
                "UPDATE cloud_uploads SET state = 'sent', sent_at = now(), last_status = 200 WHERE id = $1", [upload.id])
            let byHand = try await Self.uploadEvents(admin, device: upload.deviceID)
            #expect(byHand.count == 1)
            #expect(byHand.first?.actor == user)
            #expect(byHand.first?.station == RegistryFixture.station)
            #expect(byHand.first?.detail["outcome"] == "sent")
            #expect(byHand.first?.detail["status"] == "200")
            #expect(byHand.first?.detail["job"] == String(fixture.job.id))

            // Through the API: one event per recorded attempt, none for the claim itself.
            let second = try await Self.queued(admin, fixture)
            let claimed = try #require(try await station.claimCloudUploads(limit: 10, lease: .seconds(60)).first)
            #expect(try await Self.uploadEvents(admin, device: second.deviceID).isEmpty)
            _ = try await station.recordCloudUploadAttempt(claimed.upload, outcome: .retry(after: .seconds(1)), status: 503,
                                                           requestID: "req-1", reason: "unavailable", station: RegistryFixture.station)
            var events = try await Self.uploadEvents(admin, device: second.deviceID)
            #expect(events.map { $0.detail["outcome"] } == ["retry"])
            #expect(events.first?.detail["request_id"] == "req-1" && events.first?.actor == user)
            // Two timeouts in a row (the same answer, no request ID) are two attempts, two events.
            for _ in 0..<2 {
                let again = try #require(try await admin.cloudUploads(deviceID: second.deviceID).first)
                _ = try await station.recordCloudUploadAttempt(again, outcome: .retry(after: .zero), status: nil, requestID: nil,
                                                               reason: "timed out", station: RegistryFixture.station)
            }
            events = try await Self.uploadEvents(admin, device: second.deviceID)
            #expect(events.map { $0.detail["reason"] } == ["unavailable", "timed out", "timed out"])
        }
    }
}
