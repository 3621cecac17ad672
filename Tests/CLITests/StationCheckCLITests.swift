import DeviceBus
import Foundation
import Simulator
import Testing
import TestSupport

/// `keyline station check` and `keyline devices --pipeline` as a station runs them: the real USB
/// code through the libusb stand-in (one port without permission, as with no udev rule), the test
/// PostgreSQL through the environment, a directory store (issue 23).
@Suite("station check and the jig's ports, end to end", .serialized)
struct StationCheckCLITests {
    final class Jig: @unchecked Sendable {
        let fleet: SimulatedFleet
        let server: StandInServer
        let scratch: ScratchDirectory
        let database: String
        var environment: [String: String]

        init() async throws {
            let open = USBPortPath(bus: 1, ports: [1, 1]), denied = USBPortPath(bus: 1, ports: [1, 2])
            let outside = USBPortPath(bus: 1, ports: [1, 7])
            let fleet = try SimulatedFleet(timeScale: 0, seed: 230)
            for port in [open, denied, outside] { try fleet.add(.photon, at: port, mode: .dfu) }
            let server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet, accessDenied: [denied])
            try server.start()
            let database = "kl_stck_" + String((0..<10).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
            try await DatabaseCLITests.psql("CREATE DATABASE \(database)")
            var environment = try Subprocess.standInEnvironment(socket: server.socketPath)
                .merging(try DatabaseCLITests.environment(database: database)) { _, new in new }
            if environment["DATABASE_URL"] == nil { environment["DATABASE_URL"] = "" }
            environment["KEYLINE_STATION"] = "line-7"
            environment["PARTICLE_ACCESS_TOKEN"] = ""
            self.fleet = fleet
            self.server = server
            self.scratch = try ScratchDirectory(label: "station-check")
            self.database = database
            self.environment = environment
            try await run(["db", "migrate"]).requireSuccess()
            let keygen = try await run(["escrow", "keygen", "-o", scratch.path("rma-identity.txt")]).requireSuccess()
            try scratch.write("recipients.txt", Array(keygen.stdout.utf8))
        }

        /// A pipeline naming `ports` (path, nickname) as the jig's.
        func pipeline(ports: [(String, String)]) throws -> String {
            let list = ports.map { "  - {path: \"\($0.0)\", name: \"\($0.1)\"}" }.joined(separator: "\n")
            try scratch.write("jig.yaml", Array("""
                name: jig
                product: {id: jig, name: Jig}
                platform: photon
                escrow: {recipients: recipients.txt, store: escrow}
                cloud: {upload: none}
                ports:
                \(list)
                """.utf8))
            return scratch.path("jig.yaml")
        }

        func run(_ arguments: [String]) async throws -> ChildProcess.Result {
            try await ChildProcess.run(Subprocess.keyline, arguments, environment: environment, timeout: .seconds(300))
        }

        func stop() async throws {
            server.stop()
            try await DatabaseCLITests.psql("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
        }
    }

    static func objects(_ result: ChildProcess.Result) throws -> [[String: Any]] {
        try result.lines.map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }

    @Test func aPortWithoutPermissionFailsTheUSBCheckWithTheUdevHint() async throws {
        let jig = try await Jig()
        let pipeline = try jig.pipeline(ports: [("1-1.1", "slot 1"), ("1-1.2", "slot 2")])
        let failed = try await jig.run(["station", "check", pipeline, "--json"])
        #expect(failed.status == 1, "\(failed.stdout)\n\(failed.stderr)")
        let lines = try Self.objects(failed)
        let byCheck = Dictionary(uniqueKeysWithValues: lines.compactMap { line in (line["check"] as? String).map { ($0, line) } })
        #expect(byCheck["usb"]?["status"] as? String == "fail")
        #expect((byCheck["usb"]?["message"] as? String)?.contains("1-1.2 (slot 2)") == true, "\(byCheck["usb"] ?? [:])")
        #expect((byCheck["usb"]?["hint"] as? String)?.contains("50-particle.rules") == true)
        for check in ["pipeline", "registry", "store", "recipients", "clock"] {
            #expect(byCheck[check]?["status"] as? String == "pass", "\(check): \(byCheck[check] ?? [:])")
        }
        #expect(byCheck["cloud"]?["status"] as? String == "skip")
        let summary = try #require(lines.last?["summary"] as? [String: Any])
        #expect(summary["passed"] as? Bool == false && summary["fail"] as? Int == 1)

        // The jig without the port that has no permission: ready, in words for people.
        let ready = try await jig.run(["station", "check", try jig.pipeline(ports: [("1-1.1", "slot 1")])])
        #expect(ready.status == 0, "\(ready.stdout)\n\(ready.stderr)")
        #expect(ready.stdout.contains("PASS  usb"), "\(ready.stdout)")
        #expect(ready.stdout.contains("station line-7 is ready"), "\(ready.stdout)")
        try await jig.stop()
    }

    @Test func devicesWithAPipelineMarkThePortsItDoesNotPermit() async throws {
        let jig = try await Jig()
        let pipeline = try jig.pipeline(ports: [("1-1.1", "slot 1"), ("1-1.2", "slot 2")])
        let listed = try await jig.run(["devices", "--pipeline", pipeline, "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        let rows = try Self.objects(listed)
        let byPort = Dictionary(uniqueKeysWithValues: rows.compactMap { row in (row["port"] as? String).map { ($0, row) } })
        #expect(byPort["1-1.1"]?["permitted"] as? Bool == true && byPort["1-1.1"]?["portName"] as? String == "slot 1")
        #expect(byPort["1-1.7"]?["permitted"] as? Bool == false && byPort["1-1.7"]?["portName"] == nil)
        let table = try await jig.run(["devices", "--pipeline", pipeline])
        #expect(table.stdout.split(separator: "\n").contains { $0.hasPrefix("1-1.7 NOT PERMITTED") }, "\(table.stdout)")
        #expect(table.stdout.contains("1-1.1 (slot 1)"), "\(table.stdout)")
        // Without --pipeline nothing is marked.
        let plain = try Self.objects(try await jig.run(["devices", "--json"]))
        #expect(plain.allSatisfy { $0["permitted"] == nil })
        try await jig.stop()
    }
}
