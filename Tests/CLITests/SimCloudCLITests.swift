import DeviceBus
import DeviceKeys
import Foundation
import ParticleDevice
import ParticlePlatform
import Simulator
import Testing
import TestSupport

/// `keyline-sim cloud` as a process (URL, token file, state across restarts, option errors), and
/// the cloud status `keyline devices` reads from simulated devices through the libusb stand-in.
@Suite struct SimCloudCLITests {
    static let token = "cli-sim-token-42"
    static let photonID = "3a0020000d47343233323032"

    /// Starts `keyline-sim cloud` and waits for its URL file.
    static func startCloud(_ folder: ScratchDirectory, extra: [String] = []) async throws -> (Subprocess.Background, SimulatedCloudClient) {
        try? FileManager.default.removeItem(atPath: folder.path("url"))
        let child = try Subprocess.Background(Subprocess.keylineSim, [
            "cloud", "--token-file", folder.path("token"), "--url-file", folder.path("url"), "--state", folder.path("cloud.json"),
        ] + extra)
        try await child.waitForSocket(folder.path("url"))
        try await waitUntil("the URL written") { (try? String(contentsOfFile: folder.path("url"), encoding: .utf8))?.hasSuffix("\n") == true }
        let url = try String(contentsOfFile: folder.path("url"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        try await waitUntil("the URL on stdout") { child.output.contains("cloud \(url)") }
        return (child, try SimulatedCloudClient(url: url))
    }

    @Test func servesTheAPIAndKeepsKeysAcrossRestarts() async throws {
        let folder = try ScratchDirectory(label: "sim-cloud-cli")
        try folder.write("token", Array("\(Self.token)\n".utf8))
        let key = try DevicePrivateKey.generate(.rsa).publicKey
        let form = [("deviceID", Self.photonID), ("publicKey", key.pem), ("filename", "cli"), ("order", "manual_1"), ("algorithm", "rsa")]

        let (first, client) = try await Self.startCloud(folder, extra: ["--product", "12345"])
        let refused = try await client.post("/v1/provisioning/\(Self.photonID)", form: form, headers: ["Authorization": "Bearer nope"])
        #expect(refused.status == 401)
        let accepted = try await client.post("/v1/provisioning/\(Self.photonID)", form: form, headers: ["Authorization": "Bearer \(Self.token)"])
        #expect(accepted.status == 200, "\(String(decoding: accepted.body, as: UTF8.self))")
        let unknownProduct = try await client.post("/v1/products/999/devices", form: [("id", Self.photonID)],
                                                   headers: ["Authorization": "Bearer \(Self.token)"])
        #expect(unknownProduct.status == 404)
        #expect(await first.stop() == 0)
        #expect(!first.output.contains(Self.token))

        let (second, again) = try await Self.startCloud(folder)
        let held = try await again.send("GET", "/sim/devices/\(Self.photonID)")
        #expect(held.json["fingerprint"] as? String == key.fingerprint)
        #expect(try await again.send("GET", "/sim/calls").json["api"] as? Int == 0)
        #expect(await second.stop() == 0)
    }

    @Test func optionErrors() async throws {
        let folder = try ScratchDirectory(label: "sim-cloud-cli")
        let missing = try await Subprocess.run(Subprocess.keylineSim, ["cloud", "--token-file", folder.path("none")])
        #expect(missing.status == 66, "\(missing.stderr)")
        try folder.write("empty", [])
        let empty = try await Subprocess.run(Subprocess.keylineSim, ["cloud", "--token-file", folder.path("empty")])
        #expect(empty.status == 64, "\(empty.stderr)")
        try folder.write("token", Array("t".utf8))
        for arguments in [["--listen", "nowhere"], ["--faults", "explode=1"]] {
            let result = try await Subprocess.run(Subprocess.keylineSim, ["cloud", "--token-file", folder.path("token")] + arguments)
            #expect(result.status == 64, "\(arguments): \(result.stderr)")
        }
        let outside = try await Subprocess.run(Subprocess.keylineSim, ["cloud", "--token-file", folder.path("token"), "--listen", "0.0.0.0:0"])
        #expect(outside.status == 74, "\(outside.stderr)")
        let noCloud = try await Subprocess.run(Subprocess.keylineSim, ["serve", "--socket", Subprocess.socketPath(), "--cloud", "http://127.0.0.1:1"])
        #expect(noCloud.status == 69, "\(noCloud.stderr)")
    }

    /// keyline's real USB code reads Device OS's cloud status (control request 300) through the
    /// stand-in: a device whose key the cloud holds is online, one whose key it does not is connecting.
    @Test func devicesShowsTheCloudConnection() async throws {
        let cloud = try SimulatedCloud(token: Self.token)
        let server = try await SimulatedCloudServer(cloud: cloud)
        do {
            try await Self.listDevices(cloud: cloud, url: server.url)
            await server.stop()
        } catch {
            await server.stop()
            throw error
        }
    }

    static func listDevices(cloud: SimulatedCloud, url: String) async throws {
        let client = try SimulatedCloudClient(url: url)
        let link = SimulatedCloudLink(client: client, log: { _ in })
        let fleet = try SimulatedFleet(timeScale: 0.001, seed: 77, cloudLink: link)
        let online = USBPortPath(bus: 1, ports: [1, 1]), mismatch = USBPortPath(bus: 1, ports: [1, 2]), dfu = USBPortPath(bus: 1, ports: [1, 3])
        let key = try DevicePrivateKey.generate(.ec)
        try await client.registerFactory([.init(deviceID: fleet.plannedDeviceID(.boron, at: online), platform: "boron", publicKey: key.publicKey)])
        let good = try fleet.add(.boron, at: online, mode: .normal, factoryKey: key)
        let bad = try fleet.add(.boron, at: mismatch, mode: .normal, factoryKey: try DevicePrivateKey.generate(.ec))
        try fleet.add(.boron, at: dfu, mode: .dfu)
        try await waitUntil("both handshakes done") { good.cloudStatus == .connected && bad.cloudStatus == .connecting }

        let server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet)
        try server.start()
        defer { server.stop() }
        let environment = try Subprocess.standInEnvironment(socket: server.socketPath)
        let json = try await Subprocess.run(Subprocess.keyline, ["devices", "--json"], environment: environment)
        #expect(json.status == 0, "\(json.stderr)")
        var cloudByPort: [String: String] = [:]
        for line in json.lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
            cloudByPort[object["port"] as? String ?? "?"] = object["cloud"] as? String ?? "-"
        }
        #expect(cloudByPort == [online.description: "connected", mismatch.description: "connecting", dfu.description: "-"])

        let table = try await Subprocess.run(Subprocess.keyline, ["devices"], environment: environment)
        #expect(table.status == 0, "\(table.stderr)")
        let rows = table.lines.map(String.init)
        #expect(rows.contains { $0.hasPrefix(online.description) && $0.contains("online (breathing cyan)") })
        #expect(rows.contains { $0.hasPrefix(mismatch.description) && $0.contains("connecting (blinking cyan)") })
    }
}
