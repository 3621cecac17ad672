import FailurePolicy
import Foundation
import Testing
@testable import ParticleCloud
import Registry
import TestSupport

/// The drainer's failure policy against a scripted loopback server (the end-to-end tests use the
/// real simulated cloud).
@Suite("The cloud outbox drainer")
struct DrainerTests {
    @Test("Every pending upload is sent once, with the token in the header only, and recorded")
    func sendsAll() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let fixture = try await OutboxFixture.make(registry)
            for n in 0..<6 { try await fixture.register(n) }
            let cloud = try await ScriptedCloud { request, _ in ScriptedCloud.accepted(request) }
            defer { Task { await cloud.stop() } }
            let tally = try await fixture.drainer(cloud).drain(until: .now + .seconds(60))
            #expect(tally.sent == 6)
            let uploads = cloud.requests.filter { $0.uri.hasPrefix("/v1/provisioning/") }
            #expect(uploads.count == 6)
            #expect(Set(uploads.map(\.uri)).count == 6)
            for request in cloud.requests {
                #expect(request.header("Authorization") == "Bearer test-token-never-logged")
                #expect(!request.body.contains("test-token"))
            }
            #expect(uploads.allSatisfy { $0.form["algorithm"] == "ecc" && $0.form["product_id"] == OutboxFixture.product })
            #expect(try await registry.cloudUploadCounts().sent == 6)
            // Nothing left: a second drain sends nothing.
            #expect(try await fixture.drainer(cloud).drain(until: .now + .seconds(5)).sent == 0)
            #expect(cloud.requests.count == 12)
            let events = try await registry.events().filter { $0.kind == "cloud.upload" }
            #expect(events.count == 6)
            #expect(events.allSatisfy { $0.detail["status"] == "200" && $0.detail["request_id"]?.hasPrefix("req-") == true })
            let dump = events.map { "\($0)" }.joined()
            #expect(!dump.contains("test-token"))
        }
    }

    @Test("429 and 503 are retried (Retry-After honoured) until accepted")
    func retries() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let fixture = try await OutboxFixture.make(registry)
            try await fixture.register(10)
            let cloud = try await ScriptedCloud { request, index in
                switch index {
                case 0: ScriptedCloud.error(429, "rate_limited", "slow down", headers: [("Retry-After", "1")])
                case 1: ScriptedCloud.error(503, "unavailable", "try later")
                default: ScriptedCloud.accepted(request)
                }
            }
            defer { Task { await cloud.stop() } }
            let tally = try await fixture.drainer(cloud, joinProduct: false).drain(until: .now + .seconds(60))
            #expect(tally.sent == 1)
            #expect(tally.retried == 2)
            let upload = try #require(try await registry.cloudUploads().first)
            #expect(upload.state == .sent)
            #expect(upload.attempts == 3)
            let statuses = try await registry.events().filter { $0.kind == "cloud.upload" }.compactMap { $0.detail["status"] }
            #expect(statuses == ["429", "503", "200"])
        }
    }

    @Test("401 stops every upload with one operator error; nothing is parked")
    func unauthorized() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let fixture = try await OutboxFixture.make(registry)
            for n in 20..<28 { try await fixture.register(n) }
            let cloud = try await ScriptedCloud { _, _ in
                ScriptedCloud.error(401, "invalid_token", "The access token provided is invalid.")
            }
            defer { Task { await cloud.stop() } }
            do {
                _ = try await fixture.drainer(cloud, inFlight: 2).drain(until: .now + .seconds(60))
                Issue.record("a refused token did not stop the drain")
            } catch let error as ParticleCloudError {
                guard case .unauthorized(let status, let code, _, _, _) = error else {
                    Issue.record("unexpected \(error)")
                    return
                }
                #expect(status == 401 && code == "invalid_token")
                #expect(error.failureClass == .needsOperator)
                #expect(!"\(error)".contains("test-token"))
            }
            // At most the requests in flight when the first 401 came back; the tray is not burnt.
            #expect(cloud.requests.count <= 2)
            let counts = try await registry.cloudUploadCounts()
            #expect(counts.pending == 8 && counts.parked == 0 && counts.sent == 0)
            // Released: due again now, for the next push with a good token.
            #expect(try await registry.claimCloudUploads(limit: 10, lease: .seconds(1)).count == 8)
        }
    }

    @Test("400 and a non-member park that upload with the cloud's reason; the others go through")
    func parks() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let fixture = try await OutboxFixture.make(registry)
            try await fixture.register(30)
            try await fixture.register(31)
            try await fixture.register(32)
            let rejected = OutboxFixture.deviceID(31), outsider = OutboxFixture.deviceID(32)
            let cloud = try await ScriptedCloud { request, _ in
                if request.uri.hasSuffix("/devices"), request.form["id"] == outsider {
                    return ScriptedCloud.Response(status: 200, body: #"{"updatedDeviceIds":[],"existingDeviceIds":[],"invalidDeviceIds":[],"nonmemberDeviceIds":["\#(outsider)"]}"#)
                }
                if request.uri == "/v1/provisioning/\(rejected)" {
                    return ScriptedCloud.error(400, "invalid_request", "Key type does not match the device's protocol")
                }
                return ScriptedCloud.accepted(request)
            }
            defer { Task { await cloud.stop() } }
            let tally = try await fixture.drainer(cloud).drain(until: .now + .seconds(60))
            #expect(tally.sent == 1)
            #expect(tally.parked.count == 2)
            let parked = try await registry.cloudUploads(state: .parked)
            #expect(parked.first { $0.deviceID == rejected }?.reason == "invalid_request: Key type does not match the device's protocol")
            #expect(parked.first { $0.deviceID == rejected }?.lastStatus == 400)
            #expect(parked.first { $0.deviceID == outsider }?.reason?.contains("nonmemberDeviceIds") == true)
            #expect(!cloud.requests.contains { $0.uri == "/v1/provisioning/\(outsider)" })
            // The operator fixed it: queued again and sent.
            #expect(try await registry.requeueParkedCloudUploads(deviceIDs: [outsider]) == 1)
        }
    }

    @Test("No reply at all (nothing listening) keeps uploads pending and says so")
    func cloudDown() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let fixture = try await OutboxFixture.make(registry)
            try await fixture.register(40)
            let cloud = try await ScriptedCloud { request, _ in ScriptedCloud.accepted(request) }
            let drainer = try fixture.drainer(cloud)
            await cloud.stop()
            do {
                _ = try await drainer.drain(until: .now + .milliseconds(300))
                Issue.record("a drain with the cloud down reported success")
            } catch let error as ParticleCloudError {
                guard case .stillPending(let count, let problem) = error else { Issue.record("\(error)"); return }
                #expect(count == 1)
                #expect(problem != nil)
                #expect(error.failureClass == .retryable)
            }
            let upload = try #require(try await registry.cloudUploads().first)
            #expect(upload.state == .pending && upload.attempts >= 1 && upload.lastStatus == nil)
        }
    }

    @Test("A drainer that died after taking an upload (before recording the reply) leaves it to be sent again")
    func crashAfterClaim() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let fixture = try await OutboxFixture.make(registry)
            try await fixture.register(50)
            try await fixture.register(51)
            // The dead drainer: it took device 50's upload (its lease already over) and never recorded.
            let taken = try await registry.claimCloudUploads(limit: 1, lease: .zero)
            #expect(taken.count == 1)
            let cloud = try await ScriptedCloud { request, _ in ScriptedCloud.accepted(request) }
            defer { Task { await cloud.stop() } }
            let tally = try await fixture.drainer(cloud, joinProduct: false).drain(until: .now + .seconds(60))
            #expect(tally.sent == 2)
            let uris = cloud.requests.map(\.uri).sorted()
            #expect(uris == ["/v1/provisioning/\(OutboxFixture.deviceID(50))", "/v1/provisioning/\(OutboxFixture.deviceID(51))"])
            let resent = try #require(try await registry.cloudUploads(deviceID: OutboxFixture.deviceID(50)).first)
            #expect(resent.state == .sent && resent.attempts == 2)
        }
    }
}
