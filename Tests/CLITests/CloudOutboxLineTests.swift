import DeviceBus
import DeviceKeys
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// Issue 20 end to end: keyline provisions simulated devices through the real USB path and the
/// libusb stand-in, sends their keys to the simulated Particle cloud (`SimulatedCloud`, the same
/// server `keyline-sim cloud` runs), and the devices, which present their key at their cloud
/// connection, come online only if the cloud holds it.
@Suite("Cloud outbox, end to end", .serialized)
struct CloudOutboxLineTests {
    static let token = "e2e-particle-token-7c41d09ab2"

    static func port(_ hub: UInt8, _ index: Int) -> USBPortPath { USBPortPath(bus: 1, ports: [hub, UInt8(index)]) }

    /// A simulated cloud on loopback, and a line whose devices connect to it.
    static func cloudLine(seed: UInt64, borons: Int) async throws -> (ProvisionLine, SimulatedCloud, SimulatedCloudServer) {
        let cloud = try SimulatedCloud(token: token)
        let server = try await SimulatedCloudServer(cloud: cloud)
        let link = SimulatedCloudLink(client: try SimulatedCloudClient(url: server.url), retryInterval: .seconds(1), log: { _ in })
        let line = try await ProvisionLine(seed: seed, cloudLink: link) { fleet in
            for index in 1...borons { try fleet.add(.boron, at: port(1, index), mode: .dfu) }
        }
        try await waitUntil("\(borons) devices attached") { line.fleet.attachedDevices().count >= borons }
        line.environment["PARTICLE_API_URL"] = server.url
        return (line, cloud, server)
    }

    /// The boron pipeline with a `cloud:` section appended.
    static func pipeline(_ line: ProvisionLine, cloud: String) throws -> String {
        let file = line.scratch.url.appendingPathComponent("boron-cloud.yaml")
        let text = try String(contentsOfFile: ProvisionLine.pipeline("boron-factory.yaml"), encoding: .utf8) + "\ncloud:\n" + cloud
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }

    static func tokenFile(_ line: ProvisionLine, _ token: String) throws -> String {
        let path = line.scratch.url.appendingPathComponent("particle-token").path
        try? FileManager.default.removeItem(atPath: path)
        try Data("\(token)\n".utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        return path
    }

    static func everyDeviceOnline(_ line: ProvisionLine) async throws {
        try await waitUntil("every device online (breathing cyan)") {
            line.fleet.allDevices.allSatisfy { $0.device.cloudStatus == .connected }
        }
    }

    /// The key the cloud holds for each device is the one registered (and the one it holds).
    static func expectCloudHoldsRegisteredKeys(_ line: ProvisionLine, _ cloud: SimulatedCloud) async throws {
        let registry = try await line.registry()
        for (_, device) in line.fleet.allDevices {
            let registered = try await registry.activeRegistrations(deviceID: device.deviceID)
            #expect(registered.count == 1)
            #expect(cloud.record(for: device.deviceID)?.fingerprint == registered.first?.fingerprint)
        }
    }

    @Test("Host mode: every key is uploaded while the line runs and every device comes online; no token or key byte leaks")
    func hostModeOnline() async throws {
        let (line, cloud, server) = try await Self.cloudLine(seed: 61, borons: 3)
        defer { Task { await line.stop(); await server.stop() } }
        line.environment["PARTICLE_ACCESS_TOKEN"] = Self.token
        let result = try await line.keyline(["provision", ProvisionLine.pipeline("boron-factory.yaml"), "--json"])
        #expect(result.status == 0, "\(result.stderr)\n\(result.stdout.suffix(2000))")
        let counts = try await line.registry().cloudUploadCounts()
        #expect(counts.sent == 3 && counts.pending == 0 && counts.parked == 0)
        try await Self.everyDeviceOnline(line)
        try await Self.expectCloudHoldsRegisteredKeys(line, cloud)
        #expect(cloud.callCounts.keysAccepted == 3)
        let status = try await line.keyline(["cloud", "status", "--json"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("\"sent\":3"))

        // Each attempt is an event with its status and request ID; the token is nowhere.
        let events = try await line.registry().events().filter { $0.kind == "cloud.upload" }
        #expect(events.count == 3)
        #expect(events.allSatisfy { $0.detail["status"] == "200" && ($0.detail["request_id"] ?? "").isEmpty == false })
        for output in [result.stdout, result.stderr, status.stdout, status.stderr] { #expect(!output.contains(Self.token)) }
        var dumpArguments = ["--data-only", "--no-owner"]
        if let url = line.environment["DATABASE_URL"], !url.isEmpty { dumpArguments.append(url) }
        let dump = try await ChildProcess.run("pg_dump", dumpArguments, environment: line.environment, timeout: .seconds(120))
        #expect(dump.status == 0 && dump.stdout.contains("cloud_uploads"))
        #expect(!dump.stdout.contains(Self.token))
        try await line.expectNoKeyMaterial(in: [result, status])
    }

    @Test("The cloud down for the whole batch: uploads queue, the line finishes, `cloud push` drains them all online")
    func cloudDownThenPush() async throws {
        let (line, cloud, server) = try await Self.cloudLine(seed: 62, borons: 3)
        defer { Task { await line.stop(); await server.stop() } }
        let token = try Self.tokenFile(line, Self.token)
        let pipeline = try Self.pipeline(line, cloud: "  token_file: \(token)\n  drain_timeout: 1s\n")
        cloud.setFaults(try SimulatedCloudFaults.parse("down=3600"))
        let offline = try await line.keyline(["provision", pipeline, "--json"])
        #expect(offline.status == 0, "\(offline.stderr)\n\(offline.stdout.suffix(2000))")
        // With --json the cloud's state is a JSON line before the summary.
        #expect(offline.stdout.contains("\"cloud\"") && offline.stdout.contains("still pending"), "\(offline.stdout.suffix(2000))")
        let registry = try await line.registry()
        #expect(try await registry.cloudUploadCounts().pending == 3)
        #expect(cloud.callCounts.keysAccepted == 0)
        // Registered and escrowed regardless: nothing that reached the registry is undone.
        try await line.checkInvariants(product: try ProvisionLine.productID(pipeline),
                                       devices: line.fleet.allDevices.map(\.device))

        cloud.setFaults(SimulatedCloudFaults())
        line.environment["PARTICLE_TOKEN_FILE"] = token
        let push = try await line.keyline(["cloud", "push", "--json", "--timeout", "120"])
        #expect(push.status == 0, "\(push.stderr)\n\(push.stdout)")
        #expect(try await registry.cloudUploadCounts().sent == 3)
        try await Self.everyDeviceOnline(line)
        try await Self.expectCloudHoldsRegisteredKeys(line, cloud)
        // A second push sends nothing: a key recorded as sent is never sent again.
        let again = try await line.keyline(["cloud", "push", "--json"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(cloud.callCounts.keysAccepted == 3)
    }

    @Test("SIGKILL between registration and upload: the resume sends exactly the pending uploads, each once")
    func killedBetweenRegistrationAndUpload() async throws {
        let (line, cloud, server) = try await Self.cloudLine(seed: 64, borons: 3)
        defer { Task { await line.stop(); await server.stop() } }
        let token = try Self.tokenFile(line, Self.token)
        // A drain timeout longer than the outbox's 90 s lease: an upload the killed run had claimed
        // is sent by the resume once its lease runs out.
        let pipeline = try Self.pipeline(line, cloud: "  token_file: \(token)\n  drain_timeout: 180s\n")
        cloud.setFaults(try SimulatedCloudFaults.parse("down=3600"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Subprocess.keyline)
        process.arguments = ["provision", pipeline, "--json"]
        process.environment = ProcessInfo.processInfo.environment.merging(line.environment) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let registry = try await line.registry()
        // Every key registered (its upload queued in the same transaction), none accepted: kill.
        try await waitUntil(deadline: .seconds(240), poll: .milliseconds(20), "three uploads queued") {
            try await registry.cloudUploadCounts().pending == 3
        }
        #expect(kill(process.processIdentifier, SIGKILL) == 0)
        await process.waitForExit()
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(cloud.callCounts.keysAccepted == 0)
        let jobID = try #require(try await registry.cloudUploads().first?.jobID)

        cloud.setFaults(SimulatedCloudFaults())
        let resume = try await line.keyline(["provision", pipeline, "--resume", String(jobID), "--json"])
        #expect(resume.status == 0, "\(resume.stderr)\n\(resume.stdout.suffix(2000))")
        #expect(try await registry.cloudUploadCounts().sent == 3)
        #expect(cloud.callCounts.keysAccepted == 3)
        for (_, device) in line.fleet.allDevices {
            #expect(cloud.callCounts(for: device.deviceID).keysAccepted == 1, "\(device.deviceID)")
        }
        try await Self.everyDeviceOnline(line)
        try await Self.expectCloudHoldsRegisteredKeys(line, cloud)
    }

    @Test("401: one clear operator error, nothing parked; a good token then finishes the job")
    func refusedToken() async throws {
        let (line, cloud, server) = try await Self.cloudLine(seed: 63, borons: 3)
        defer { Task { await line.stop(); await server.stop() } }
        line.environment["PARTICLE_ACCESS_TOKEN"] = "expired-token-0000"
        let run = try await line.keyline(["provision", ProvisionLine.pipeline("boron-factory.yaml"), "--json"])
        #expect(run.status == 0, "\(run.stderr)\n\(run.stdout.suffix(2000))")
        #expect(run.stdout.components(separatedBy: "refused the access token").count == 2, "\(run.stdout.suffix(2000))")
        let registry = try await line.registry()
        let counts = try await registry.cloudUploadCounts()
        #expect(counts.parked == 0 && counts.sent == 0 && counts.pending == 3)
        #expect(cloud.callCounts.keysAccepted == 0)
        #expect(!run.stderr.contains("expired-token-0000") && !run.stdout.contains("expired-token-0000"))

        let refused = try await line.keyline(["cloud", "push"])
        #expect(refused.status == 77, "\(refused.stderr)")
        #expect(refused.stderr.components(separatedBy: "refused the access token").count == 2, "\(refused.stderr)")
        #expect(try await registry.cloudUploadCounts().parked == 0)

        line.environment["PARTICLE_ACCESS_TOKEN"] = Self.token
        let push = try await line.keyline(["cloud", "push"])
        #expect(push.status == 0, "\(push.stderr)")
        try await Self.everyDeviceOnline(line)
    }

    @Test("Restore of a damaged slot makes no cloud call and the device is online again; keys doctor uploads its new key")
    func restoreAndDoctor() async throws {
        let (line, cloud, server) = try await Self.cloudLine(seed: 64, borons: 2)
        defer { Task { await line.stop(); await server.stop() } }
        line.environment["PARTICLE_ACCESS_TOKEN"] = Self.token
        let provisioned = try await line.keyline(["provision", ProvisionLine.pipeline("boron-factory.yaml"), "--json"])
        #expect(provisioned.status == 0, "\(provisioned.stderr)\n\(provisioned.stdout.suffix(2000))")
        try await Self.everyDeviceOnline(line)
        let product = try ProvisionLine.productID(ProvisionLine.pipeline("boron-factory.yaml"))
        let devices = line.fleet.allDevices.map(\.device)
        let callsBefore = cloud.callCounts.api

        devices[0].corruptKeySlot(seed: 9)
        let restored = try await line.keyline(["restore", devices[0].deviceID, "--identity", line.identity.path,
                                               "--reason", "damaged slot", "--json"])
        #expect(restored.status == 0, "\(restored.stderr)\n\(restored.stdout)")
        try await Self.everyDeviceOnline(line)
        #expect(cloud.callCounts.api == callsBefore, "the restore called the cloud")

        // In the scratch folder: doctor writes DEVICE_ID_<alg>_new.pub.pem into its working directory.
        let doctored = try await ChildProcess.run(Subprocess.keyline, ["keys", "doctor", devices[1].deviceID, "--product", product,
                                                                       "--force", "--json"],
                                                  in: line.scratch.url, environment: line.environment, timeout: .seconds(300))
        #expect(doctored.status == 0, "\(doctored.stderr)\n\(doctored.stdout)")
        #expect(ProvisionLine.events(doctored).last?["cloud"] as? String == "sent")
        try await Self.everyDeviceOnline(line)
        try await Self.expectCloudHoldsRegisteredKeys(line, cloud)
        #expect(cloud.callCounts.api == callsBefore + 2)  // membership and the key, once
        #expect(try await line.registry().cloudUploadCounts().sent == 3)
    }

    @Test("Device mode with factory keys: each device's own key is escrowed and registered, the cloud holds it, all online")
    func deviceModeFactoryKeys() async throws {
        let cloud = try SimulatedCloud(token: Self.token)
        let server = try await SimulatedCloudServer(cloud: cloud)
        let client = try SimulatedCloudClient(url: server.url)
        let link = SimulatedCloudLink(client: client, retryInterval: .seconds(1), log: { _ in })
        var factory: [SimulatedCloudClient.FactoryDevice] = []
        let line = try await ProvisionLine(seed: 65, cloudLink: link) { fleet in
            for index in 1...3 {
                let key = try DevicePrivateKey.generate(.ec)
                let device = try fleet.add(.boron, at: Self.port(1, index), mode: .normal, factoryKey: key)
                factory.append(.init(deviceID: device.deviceID, platform: "boron", publicKey: key.publicKey))
            }
        }
        defer { Task { await line.stop(); await server.stop() } }
        try await client.registerFactory(factory)
        try await waitUntil("3 devices attached") { line.fleet.attachedDevices().count >= 3 }
        line.environment["PARTICLE_API_URL"] = server.url
        line.environment["PARTICLE_ACCESS_TOKEN"] = Self.token
        let file = line.scratch.url.appendingPathComponent("boron-device.yaml")
        try String(contentsOfFile: ProvisionLine.pipeline("boron-factory.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "key_mode: host", with: "key_mode: device")
            .write(to: file, atomically: true, encoding: .utf8)
        let result = try await line.keyline(["provision", file.path, "--json"])
        #expect(result.status == 0, "\(result.stderr)\n\(result.stdout.suffix(2000))")
        try await line.checkInvariants(product: try ProvisionLine.productID(file.path), devices: line.fleet.allDevices.map(\.device))
        try await Self.everyDeviceOnline(line)
        try await Self.expectCloudHoldsRegisteredKeys(line, cloud)
        let registry = try await line.registry()
        for entry in factory {
            #expect(try await registry.activeRegistrations(deviceID: entry.deviceID).first?.fingerprint == entry.publicKey?.fingerprint)
        }
        // `cloud.upload: all` (the default) sends the factory keys too: the cloud takes them as the same keys.
        #expect(try await registry.cloudUploadCounts().sent == 3)
    }
}
