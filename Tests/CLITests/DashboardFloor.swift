import DeviceBus
import DeviceKeys
import EscrowS3
import Foundation
import HeadlessBrowser
import Registry
import Simulator
import Testing
import TestSupport

/// Two simulated stations on one registry with `keyline dashboard` over them, for the browser
/// test of issue 23: station A is a `ProvisionLine` (its fleet, the database, a directory store);
/// station B has its own fleet behind its own stand-in socket and escrows to S3 through a proxy
/// the test can stop and start again (the store going away and coming back). Each station runs
/// `keyline provision --wait` as its own bound station login; the dashboard runs as an
/// auditor-only login with a token file.
final class DashboardFloor: @unchecked Sendable {
    static let stationA = "station-a"
    static let stationB = "station-b"

    let line: ProvisionLine
    let fleetB: SimulatedFleet
    let serverB: StandInServer
    let pipeline: URL
    let product: String
    let logins: (a: String, b: String, auditor: String)
    let token: String
    let tokenFile: URL
    let environmentA: [String: String]
    let environmentB: [String: String]
    let proxyPort: Int
    private(set) var proxy: Process?
    private(set) var dashboard: Subprocess.Background?
    private(set) var dashboardURL = ""

    init(timeScale: Double, seed: UInt64) async throws {
        line = try await ProvisionLine(timeScale: timeScale, seed: seed) { _ in }
        fleetB = try SimulatedFleet(timeScale: timeScale, seed: seed + 1)
        serverB = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleetB)
        try serverB.start()

        // Short back-offs, so a device held on the store goes on soon after it is back.
        let shipped = try String(contentsOfFile: ProvisionLine.pipeline("photon-factory.yaml"), encoding: .utf8)
        pipeline = line.scratch.url.appendingPathComponent("photon-floor.yaml")
        try shipped.replacingOccurrences(of: "max_backoff: 30s", with: "max_backoff: 1s")
            .write(to: pipeline, atomically: true, encoding: .utf8)
        product = try ProvisionLine.productID(ProvisionLine.pipeline("photon-factory.yaml"))
        _ = try await line.registry().createProduct(id: product, name: "Photon factory", platform: "photon")

        // Logins: one per station, bound to it; the dashboard's, auditor only.
        let suffix = String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        logins = ("kl_dash_a_\(suffix)", "kl_dash_b_\(suffix)", "kl_dash_view_\(suffix)")
        for login in [logins.a, logins.b, logins.auditor] { try await DatabaseCLITests.psql("CREATE ROLE \(login) LOGIN") }
        try await line.keyline(["db", "grant", logins.a, "--role", "station", "--station", Self.stationA]).requireSuccess()
        try await line.keyline(["db", "grant", logins.b, "--role", "station", "--station", Self.stationB]).requireSuccess()
        try await line.keyline(["db", "grant", logins.auditor, "--role", "auditor"]).requireSuccess()

        // Station B's store: a bucket on the local S3 server, reached only through the proxy.
        let server = try EscrowS3CLITests.endpoint()
        let bucket = "kl-dash-" + suffix
        let direct = try S3EscrowStore(uri: "s3://\(bucket)/line-b", environment: ProvisionS3Tests.awsEnvironment(server))
        try await direct.createBucket()
        proxyPort = try StoreOutageTests.freePort()

        var a = line.environment
        a["PGUSER"] = logins.a
        a["KEYLINE_STATION"] = Self.stationA
        environmentA = a
        var b = line.environment.merging(ProvisionS3Tests.awsEnvironment("http://127.0.0.1:\(proxyPort)")) { _, new in new }
        b["PGUSER"] = logins.b
        b["KEYLINE_STATION"] = Self.stationB
        b["KEYLINE_SIM_SOCKET"] = serverB.socketPath
        b["KEYLINE_ESCROW_STORE"] = "s3://\(bucket)/line-b"
        b["KEYLINE_LOG_DIR"] = line.scratch.url.appendingPathComponent("logs-b").path
        environmentB = b

        token = String((0..<40).map { _ in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        tokenFile = line.scratch.url.appendingPathComponent("dashboard-token")
        try Data(token.utf8).write(to: tokenFile)
        chmod(tokenFile.path, 0o600)
    }

    /// The environment of an auditor-only (or another) login on the floor's database.
    func environment(as login: String) -> [String: String] {
        var environment = line.environment
        environment["PGUSER"] = login
        return environment
    }

    /// Starts station B's store (the proxy to the S3 server) and waits until it accepts.
    func storeUp() async throws {
        let log = line.scratch.url.appendingPathComponent("proxy-\(UUID().uuidString.prefix(6)).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", ProvisionLine.packageRoot.appendingPathComponent("Tests/EscrowS3Tests/Fixtures/s3-fault-proxy.py").path,
                             "--port", "\(proxyPort)", "--upstream", try EscrowS3CLITests.endpoint().replacingOccurrences(of: "http://", with: "")]
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = FileHandle.nullDevice
        try process.run()
        proxy = process
        try await waitUntil(deadline: .seconds(60), "the S3 proxy to listen") {
            guard process.isRunning else { throw CLITestFailure("the S3 proxy exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")") }
            return ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("listening")
        }
    }

    /// Station B's store goes away: the proxy is stopped, its port answers nothing.
    func storeDown() async {
        guard let proxy else { return }
        if proxy.isRunning { proxy.terminate() }
        await proxy.waitForExit()
        self.proxy = nil
    }

    /// Starts `keyline dashboard` as the auditor login on a free loopback port, with the token file.
    func startDashboard() async throws {
        let port = try StoreOutageTests.freePort()
        let process = try Subprocess.Background(Subprocess.keyline,
                                                ["dashboard", "--listen", "127.0.0.1:\(port)", "--token-file", tokenFile.path],
                                                environment: environment(as: logins.auditor))
        dashboard = process
        try await waitUntil(deadline: .seconds(60), "keyline dashboard to print its URL") {
            guard process.process.isRunning else { throw CLITestFailure("keyline dashboard exited: \(process.output)") }
            return process.output.contains("listening on")
        }
        dashboardURL = "http://127.0.0.1:\(port)"
    }

    /// `keyline provision --wait` for one station, in the background.
    func provision(station environment: [String: String], devices: Int, label: String) throws -> RunningKeyline {
        // RunningKeyline takes its environment from the line when it starts the child.
        let saved = line.environment
        line.environment = environment
        defer { line.environment = saved }
        return try RunningKeyline(line, ["provision", pipeline.path, "--wait", "--devices", "\(devices)", "--json", "--timeout", "3"],
                                  label: label)
    }

    /// Every private key a device of either fleet holds (DER hex and base64, and their secret
    /// parts), and every registered public key's SPKI: none may appear in a page or an event.
    func secretNeedles() async throws -> [String] {
        var needles: [String] = [token]
        let devices = line.fleet.allDevices.map(\.device) + fleetB.allDevices.map(\.device)
        for device in devices {
            guard let key = try? DevicePrivateKey(slot: device.privateKeySlot()) else { continue }
            let der = Data(key.der)
            needles.append(der.map { String(format: "%02x", $0) }.joined())
            needles.append(der.base64EncodedString())
            let secret = key.algorithm == .ec ? key.der[7..<39] : key.der[160..<192]
            needles.append(Data(secret).base64EncodedString())
            needles.append(secret.map { String(format: "%02x", $0) }.joined())
            let spki = Data(key.publicKey.spkiDER)
            needles.append(spki.base64EncodedString())
            needles.append(spki.map { String(format: "%02x", $0) }.joined())
        }
        return needles
    }

    func stop() async {
        await storeDown()
        if let dashboard { await dashboard.stop() }
        serverB.stop()
        await line.stop()
        for login in [logins.a, logins.b, logins.auditor] { try? await DatabaseCLITests.psql("DROP ROLE IF EXISTS \(login)") }
    }
}
