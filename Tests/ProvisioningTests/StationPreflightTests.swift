import Age
import DeviceBus
import Escrow
import Foundation
import Provisioning
import Registry
import Simulator
import Testing
import TestSupport

/// `keyline station check`'s checks (issue 23) on a good station — a simulated bus, the test
/// PostgreSQL, a directory store, the simulated cloud — and each failure on its own.
@Suite("Station preflight", .serialized)
struct StationPreflightTests {
    /// A station: a pipeline with recipients, a directory store and a cloud section pointing at a
    /// simulated cloud, and one Photon on the bus.
    final class Station: @unchecked Sendable {
        let scratch: ScratchDirectory
        let cloud: SimulatedCloud
        let server: SimulatedCloudServer
        let fleet: SimulatedFleet
        static let token = "station-check-token-" + String(UInt64.random(in: 1 ... .max), radix: 16)

        init(recipients: String? = nil, extraYAML: String = "") async throws {
            let scratch = try ScratchDirectory(label: "preflight")
            try scratch.write("photon-user.bin", SyntheticFirmware.make(platform: .photon, function: .userPart, index: 1, size: nil))
            try scratch.write("recipients.txt", Array(((recipients ?? X25519Identity.generate().recipient.description) + "\n").utf8))
            let cloud = try SimulatedCloud(token: Self.token)
            let server = try await SimulatedCloudServer(cloud: cloud)
            let yaml = """
                name: preflight
                product: {id: preflight, name: Preflight test}
                platform: photon
                firmware: [photon-user.bin]
                escrow: {recipients: recipients.txt, store: store}
                station: line-3
                cloud: {upload: all, api_url: "\(server.url)"}
                \(extraYAML)
                """
            try scratch.write("pipeline.yaml", Array(yaml.utf8))
            let fleet = try SimulatedFleet(timeScale: 0, seed: 7)
            try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [1, 1]), mode: .dfu)
            self.scratch = scratch
            self.cloud = cloud
            self.server = server
            self.fleet = fleet
        }

        func check(_ registry: RegistryDatabase, token: String = Station.token, unavailable: String? = nil,
                   clockTolerance: Duration = .seconds(5)) async -> StationCheckReport {
            let request = StationCheckRequest(pipeline: scratch.path("pipeline.yaml"),
                                              environment: ["PARTICLE_ACCESS_TOKEN": token], clockTolerance: clockTolerance)
            return await StationPreflight(request: request, bus: fleet, busUnavailableReason: unavailable,
                                          connect: { _ in registry }).run()
        }

        func stop() async { await server.stop() }
    }

    static func describe(_ report: StationCheckReport) -> String {
        report.checks.map { "\($0.status.rawValue) \($0.check.rawValue): \($0.message)" }.joined(separator: "\n")
    }

    @Test("a good station passes every check, and the probe and the check are recorded where they belong",
          .timeLimit(.minutes(2)))
    func goodStationPasses() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let station = try await Station()
            defer { Task { await station.stop() } }
            let report = await station.check(registry)
            #expect(report.passed, "\(Self.describe(report))")
            #expect(report.checks.map(\.check) == StationCheck.Name.allCases)
            #expect(report.checks.allSatisfy { $0.status == .pass }, "\(Self.describe(report))")
            #expect(report.check(.usb)?.message.contains("opened 1") == true)
            #expect(report.check(.clock)?.message.contains("from the database's") == true)
            // The probe is in the store's own folder, outside every device path, and audits skip it.
            let probes = try FileManager.default.contentsOfDirectory(atPath: station.scratch.path("store/.keyline-station-checks"))
            #expect(probes.count == 1 && probes[0].hasPrefix("line-3-"))
            var listed: [String] = []
            for try await page in DirectoryEscrowStore(root: station.scratch.file("store")).objectPages(under: nil) { listed += page }
            #expect(listed.isEmpty, "\(listed)")
            // The write as the station is the check's own record.
            #expect(try await registry.events().contains { $0.kind == "station.checked" && $0.station == "line-3" })
            // The token never reaches a message.
            #expect(!Self.describe(report).contains(Station.token))
        }
    }

    @Test("a token the cloud refuses fails the cloud check, and only it", .timeLimit(.minutes(2)))
    func badTokenFailsCloud() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let station = try await Station()
            defer { Task { await station.stop() } }
            let report = await station.check(registry, token: "not-the-token")
            #expect(!report.passed)
            let cloud = try #require(report.check(.cloud))
            #expect(cloud.status == .fail && cloud.message.contains("refused the token") && cloud.message.contains("401"))
            #expect(cloud.hint?.contains("particle token create") == true)
            #expect(report.checks.filter { $0.status == .fail }.map(\.check) == [.cloud], "\(Self.describe(report))")
            #expect(!Self.describe(report).contains("not-the-token"))
        }
    }

    @Test("a station login not bound to a station fails the registry check", .timeLimit(.minutes(2)))
    func unboundLoginFailsRegistry() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let station = try await Station()
            defer { Task { await station.stop() } }
            let login = "kl_unbound_" + String(UInt32.random(in: 1 ... .max), radix: 16)
            let password = UUID().uuidString
            _ = try await registry.client.execute("CREATE ROLE \(login) LOGIN PASSWORD '\(password)' IN ROLE keyline_station", [])
            let database: String = try await registry.client.query("SELECT current_database() AS name", [])[0].decode("name")
            let connection = try await PostgresConnection.connect(TestPostgres.settings.with(database: database, user: login, password: password))
            let report = await station.check(RegistryDatabase(client: connection))
            await connection.close()
            _ = try? await registry.client.execute("DROP ROLE \(login)", [])
            let check = try #require(report.check(.registry))
            #expect(check.status == .fail && check.message.contains("login \(login) is not bound to a station"), "\(check)")
            #expect(check.hint?.contains("keyline db grant \(login) --role station --station line-3") == true)
            #expect(!report.passed)
        }
    }

    @Test("a store that cannot be written fails the store check, naming the probe", .timeLimit(.minutes(2)))
    func unwritableStoreFailsStore() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let station = try await Station()
            defer { Task { await station.stop() } }
            let store = station.scratch.path("store")
            try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])
            if geteuid() == 0 {
                // Root ignores permissions: the probes' folder taken by a file stands for a store
                // this station cannot create anything in.
                try station.scratch.write("store/.keyline-station-checks", Array("not a folder".utf8))
            } else {
                try FileManager.default.setAttributes([.posixPermissions: 0o500], ofItemAtPath: store)
            }
            defer { try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: store) }
            let report = await station.check(registry)
            let check = try #require(report.check(.store))
            #expect(check.status == .fail, "\(check)")
            #expect(check.message.contains(".keyline-station-checks") || check.message.contains("cannot be written"), "\(check)")
            #expect(report.checks.filter { $0.status == .fail }.map(\.check) == [.store], "\(Self.describe(report))")
        }
    }

    @Test("a recipient that does not parse fails the pipeline and the recipients checks", .timeLimit(.minutes(2)))
    func badRecipientFailsRecipients() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let station = try await Station(recipients: "age1thisisnotarecipient")
            defer { Task { await station.stop() } }
            let report = await station.check(registry)
            let check = try #require(report.check(.recipients))
            #expect(check.status == .fail && check.message.contains("recipients.txt"), "\(check)")
            #expect(report.check(.pipeline)?.status == .fail)
            #expect(report.check(.usb)?.status == .pass)
            #expect(report.check(.registry)?.status == .skip && report.check(.registry)?.message.contains("pipeline did not load") == true)
            #expect(!report.passed)
        }
    }

    @Test("libusb that cannot be used fails the usb check; a device outside the ports list is not opened",
          .timeLimit(.minutes(2)))
    func usbChecks() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let station = try await Station(extraYAML: "ports: [{path: \"1-1.2\", name: \"slot 2\"}]")
            defer { Task { await station.stop() } }
            let unavailable = await station.check(registry, unavailable: "LIBUSB_ERROR_OTHER in libusb_init")
            #expect(unavailable.check(.usb)?.status == .fail)
            #expect(unavailable.check(.usb)?.message.contains("LIBUSB_ERROR_OTHER") == true)
            let device = try #require(station.fleet.device(at: USBPortPath(bus: 1, ports: [1, 1])))
            let before = device.statistics.controlTransfers
            let report = await station.check(registry)
            let usb = try #require(report.check(.usb))
            #expect(usb.status == .pass && usb.message.contains("1 on ports outside the pipeline's list, not opened"), "\(usb)")
            #expect(device.statistics.controlTransfers == before)
        }
    }
}
