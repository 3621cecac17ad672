import Foundation
import DeviceBus
import Registry
import Simulator
import Testing
import TestSupport

/// Issue 12 end to end: `keyline provision` run by a station login bound with `keyline db grant`.
/// The 0008 triggers leave the runner working, and every row it writes carries the login, the
/// bound station and the database's time; another --station is refused before any device.
@Suite("keyline provision as a bound station login", .serialized)
struct ProvisionAsStationTests {
    @Test("a bound station login provisions; its rows name it and its station; another station name is refused",
          .enabled(if: TestPostgres.trustsNewLogins, "new logins connect without a password only on the local cluster's socket"))
    func boundStation() async throws {
        let line = try await ProvisionLine(seed: 31) { fleet in
            for index in 1...2 { try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [1, UInt8(index)]), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        try await waitUntil("two devices attached") { line.fleet.attachedDevices().count >= 2 }
        let login = "kl_prov_station_" + String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        try await DatabaseCLITests.psql("CREATE ROLE \(login) LOGIN")
        var failure: (any Error)?
        do {
            try await line.keyline(["db", "grant", login, "--role", "station", "--station", "test-station"]).requireSuccess()
            var asStation = line.environment
            asStation["PGUSER"] = login
            let pipeline = ProvisionLine.pipeline("photon-factory.yaml")
            let product = try ProvisionLine.productID(pipeline)
            // Products are the administrator's (0002): stations may not create them.
            _ = try await line.registry().createProduct(id: product, name: "Photon factory", platform: "photon")

            asStation["KEYLINE_STATION"] = "station-elsewhere"
            let elsewhere = try await ChildProcess.run(Subprocess.keyline, ["provision", pipeline, "--json"],
                                                       environment: asStation, timeout: .seconds(300))
            #expect(elsewhere.status == 77, "\(elsewhere.stderr)\n\(elsewhere.stdout.suffix(2000))")
            #expect(elsewhere.stdout.contains("bound to station test-station"), "\(elsewhere.stdout.suffix(2000))")
            #expect(line.fleet.allDevices.allSatisfy { $0.device.statistics.bytesProgrammed == 0 })

            asStation["KEYLINE_STATION"] = "test-station"
            let provisioned = try await ChildProcess.run(Subprocess.keyline, ["provision", pipeline, "--json"],
                                                         environment: asStation, timeout: .seconds(300))
            #expect(provisioned.status == 0, "\(provisioned.stderr)\n\(provisioned.stdout.suffix(3000))")
            try await line.checkInvariants(product: product, devices: line.fleet.allDevices.map(\.device))

            let registry = try await line.registry()
            let rows = try await registry.client.query("""
                SELECT (SELECT array_to_string(array_agg(DISTINCT actor || '@' || station), ',') FROM events
                        WHERE kind NOT LIKE 'login.%') AS events,
                       (SELECT array_to_string(array_agg(DISTINCT station), ',') FROM jobs) AS jobs,
                       (SELECT array_to_string(array_agg(DISTINCT station), ',') FROM key_registrations) AS registrations,
                       (SELECT count(*) FROM key_registrations) AS registered
                """, [])
            #expect(try rows[0].decode("events", as: String.self) == "\(login)@test-station")
            #expect(try rows[0].decode("jobs", as: String.self) == "test-station")
            #expect(try rows[0].decode("registrations", as: String.self) == "test-station")
            #expect(try rows[0].decode("registered", as: Int.self) == 2)

            // An RMA login bound to one bench, run as another: the restoration row would be
            // refused after the device was written, so the restore is refused before it.
            let rma = login + "_rma"
            try await DatabaseCLITests.psql("CREATE ROLE \(rma) LOGIN")
            try await line.keyline(["db", "grant", rma, "--role", "rma", "--station", "rma-bench"]).requireSuccess()
            var asBench = line.environment
            asBench["PGUSER"] = rma
            asBench["KEYLINE_STATION"] = "rma-elsewhere"
            let device = line.fleet.allDevices[0].device
            device.corruptKeySlot(seed: 5)
            let slotBefore = device.privateKeySlot()
            let wrongBench = try await ChildProcess.run(
                Subprocess.keyline, ["restore", device.deviceID, "--identity", line.identity.path, "--json"],
                environment: asBench, timeout: .seconds(300))
            #expect(wrongBench.status == 77, "\(wrongBench.stderr)\n\(wrongBench.stdout.suffix(2000))")
            #expect(wrongBench.stdout.contains("bound to station rma-bench"), "\(wrongBench.stdout.suffix(2000))")
            let slotUnchanged = device.privateKeySlot() == slotBefore  // a Bool: no key bytes in the failure text
            #expect(slotUnchanged, "the refused restore wrote the device")
            try? await DatabaseCLITests.psql("DROP ROLE IF EXISTS \(rma)")
        } catch {
            failure = error
        }
        try? await DatabaseCLITests.psql("DROP DATABASE IF EXISTS \(line.database) WITH (FORCE); DROP ROLE IF EXISTS \(login)")
        if let failure { throw failure }
    }
}
