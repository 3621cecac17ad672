import Escrow
import Foundation
import Registry
import Testing
import TestSupport

/// Issue 21 items 11, 14, 15 and 16 through the binary: `keys revoke|supersede`, and what
/// `keyline audit` reports or refuses about the stores and the registrations' objects.
@Suite("Trust: key status commands and audit checks", .serialized)
struct TrustCLITests {
    /// A line with two provisioned Photons; their device IDs.
    static func provisioned(seed: UInt64) async throws -> (ProvisionLine, String, [String]) {
        let line = try await ProvisionLine(seed: seed) { fleet in
            for index in 1...2 { try fleet.add(.photon, at: ProvisionTests.port(1, index), mode: .dfu) }
        }
        try await waitUntil(poll: .milliseconds(10), "two devices attached") { line.fleet.attachedDevices().count >= 2 }
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")
        try await line.keyline(["provision", pipeline, "--json"]).requireSuccess()
        let devices = try await line.sql("SELECT device_id FROM key_registrations ORDER BY device_id")
            .split(separator: "\n").map(String.init)
        return (line, try ProvisionLine.productID(pipeline), devices)
    }

    @Test("keys supersede and keys revoke: reason and ticket recorded; a bench cannot revoke; exit codes")
    func keyStatusCommands() async throws {
        let (line, product, devices) = try await Self.provisioned(seed: 91)
        defer { Task { await line.stop() } }
        #expect(devices.count == 2)
        let registry = try await line.registry()

        let superseded = try await line.keyline(["keys", "supersede", devices[0], "--reason", "replaced at bench",
                                                 "--ticket", "RMA-7", "--station", "bench-1", "--json"])
        #expect(superseded.status == 0, "\(superseded.stderr)\n\(superseded.stdout)")
        #expect(superseded.stdout.contains("\"status\":\"superseded\"") || superseded.stdout.contains("\"status\" : \"superseded\""),
                "\(superseded.stdout)")
        let event = try #require(try await registry.events(deviceID: devices[0]).last)
        #expect(event.kind == "key.superseded" && event.station == "bench-1")
        #expect(event.detail["reason"] == "replaced at bench" && event.detail["ticket"] == "RMA-7")
        #expect(try await registry.activeRegistration(productID: product, deviceID: devices[0]) == nil)

        // A bench login bound to its bench: may supersede there, never revoke.
        let login = "kl_bench_" + String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! })
        try await DatabaseCLITests.psql("CREATE ROLE \(login) LOGIN IN ROLE keyline_rma")
        defer { Task { try? await DatabaseCLITests.psql("DROP ROLE IF EXISTS \(login)") } }
        try await line.sql("INSERT INTO station_logins (login, role, station) VALUES ('\(login)', 'rma', 'bench-2')")
        let refused = try await line.keyline(["keys", "revoke", devices[1], "--reason", "stolen", "--station", "bench-2"],
                                             environment: ["PGUSER": login])
        #expect(refused.status == 77, "\(refused.stderr)")
        #expect(try await registry.activeRegistration(productID: product, deviceID: devices[1]) != nil)

        let revoked = try await line.keyline(["keys", "revoke", devices[1], "--product", product, "--reason", "stolen",
                                              "--ticket", "SEC-12", "--station", "security"])
        #expect(revoked.status == 0, "\(revoked.stderr)")
        #expect(revoked.stdout.contains("revoked") && revoked.stdout.contains("SEC-12"))
        let revokedEvent = try #require(try await registry.events(deviceID: devices[1]).last)
        #expect(revokedEvent.kind == "key.revoked" && revokedEvent.detail["ticket"] == "SEC-12")

        // Nothing active any more; no reason; a bad device ID.
        #expect(try await line.keyline(["keys", "revoke", devices[1], "--reason", "again"]).status == 65)
        #expect(try await line.keyline(["keys", "revoke", devices[1]]).status == 64)
        #expect(try await line.keyline(["keys", "revoke", "not-a-device", "--reason", "x"]).status == 64)
    }

    @Test("audit: another device's object (no --decrypt), a store not recorded, and an unsafe store are never a pass")
    func auditTrust() async throws {
        let (line, product, devices) = try await Self.provisioned(seed: 93)
        defer { Task { await line.stop() } }
        let check = ["audit", "--product", product, "--check-store", "--store", line.store.path, "--format", "json"]
        #expect(try await line.keyline(check).status == 0)

        // 16: the checks `put` makes. A group-writable product folder…
        let productFolder = line.store.appendingPathComponent(product)
        try FileManager.default.setAttributes([.posixPermissions: 0o775], ofItemAtPath: productFolder.path)
        let writable = try await line.keyline(check)
        #expect(writable.status != 0, "\(writable.stdout)")
        #expect((writable.stdout + writable.stderr).contains("chmod go-w"), "\(writable.stderr)")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: productFolder.path)
        // …and a device folder that is a link to a copy outside the store.
        let deviceFolder = productFolder.appendingPathComponent(devices[0])
        let outside = line.scratch.url.appendingPathComponent("outside-\(devices[0])")
        try FileManager.default.moveItem(at: deviceFolder, to: outside)
        try FileManager.default.createSymbolicLink(at: deviceFolder, withDestinationURL: outside)
        let linked = try await line.keyline(check)
        #expect(linked.status != 0, "\(linked.stdout)")
        #expect((linked.stdout + linked.stderr).contains("symbolic link"), "\(linked.stderr)")
        try FileManager.default.removeItem(at: deviceFolder)
        try FileManager.default.moveItem(at: outside, to: deviceFolder)
        #expect(try await line.keyline(check).status == 0)

        // 15: a store where nothing in scope is recorded verifies nothing: not exit 0.
        let elsewhere = line.scratch.url.appendingPathComponent("other-store")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        let mismatch = try await line.keyline(["audit", "--product", product, "--check-store", "--store", elsewhere.path])
        #expect(mismatch.status == 78, "\(mismatch.stderr)")
        #expect(mismatch.stderr.contains(DirectoryEscrowStore(root: line.store).storeURI), "\(mismatch.stderr)")

        // 14: a registration naming the other device's escrow object (loaded around the foreign key).
        try await line.sql("""
            SET session_replication_role = replica;
            UPDATE key_registrations SET escrow_object_id = (
                SELECT escrow_object_id FROM key_registrations WHERE device_id = '\(devices[1])')
            WHERE device_id = '\(devices[0])';
            """)
        let crossed = try await line.keyline(["audit", "--product", product, "--format", "json"])
        #expect(crossed.status == 2, "\(crossed.stderr)")
        let found = try AuditTests.findings(crossed)
        #expect(found.filter { $0.code == "escrow_object_of_another_key" }.map(\.deviceID) == [devices[0]], "\(found)")
    }
}
