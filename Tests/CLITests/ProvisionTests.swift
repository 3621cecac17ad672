import DFU
import DeviceBus
import ParticlePlatform
import DeviceKeys
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// `keyline provision` end to end: the real USB code through the libusb stand-in to simulated
/// devices, a real PostgreSQL registry and a directory escrow store; every invariant of the
/// design checked from the database, the store (decrypting) and the devices' DCT.
@Suite("keyline provision", .serialized)
struct ProvisionTests {
    static func port(_ hub: UInt8, _ index: Int) -> USBPortPath { USBPortPath(bus: 1, ports: [hub, UInt8(index)]) }

    @Test("a mixed fleet: Photons (host keys, DFU mode) and Borons (their own keys, normal mode)")
    func mixedFleet() async throws {
        let line = try await ProvisionLine(seed: 21) { fleet in
            for index in 1...3 { try fleet.add(.photon, at: Self.port(1, index), mode: .dfu) }
            for index in 1...3 { try fleet.add(.boron, at: Self.port(2, index), mode: .normal) }
        }
        defer { Task { await line.stop() } }
        try await waitUntil(poll: .milliseconds(10), "line.fleet.attachedDevices().count >= 6") { line.fleet.attachedDevices().count >= 6 }

        let photons = try await line.keyline(["provision", ProvisionLine.pipeline("photon-factory.yaml"), "--json"])
        #expect(photons.status == 0, "\(photons.stderr)\n\(photons.stdout.suffix(3000))")
        let borons = try await line.keyline(["provision", ProvisionLine.pipeline("boron-factory.yaml"), "--json"])
        #expect(borons.status == 0, "\(borons.stderr)\n\(borons.stdout.suffix(3000))")

        for (result, platform) in [(photons, Platform.photon), (borons, .boron)] {
            let summary = try #require(ProvisionLine.summary(result))
            let product = try #require(summary["product"] as? String)
            let devices = line.fleet.allDevices.map(\.device).filter { $0.platform == platform }
            let reports = summary["devices"] as? [[String: Any]] ?? []
            #expect(reports.filter { $0["outcome"] as? String == "done" }.count == 3)
            // The other platform's devices were seen and left alone.
            #expect(reports.filter { $0["outcome"] as? String == "skipped" }.count == 3)
            try await line.checkInvariants(product: product, devices: devices)
            // One JSON object per line, each state change an event.
            let states = ProvisionLine.events(result).filter { $0["type"] as? String == "state_changed" }
            #expect(states.count >= 3 * 7)
        }
        // Every device left DFU mode: back in normal mode.
        #expect(line.fleet.allDevices.map(\.device).allSatisfy { $0.currentMode == .normal })
        // A per-device log for each job.
        let logFiles = try FileManager.default.subpathsOfDirectory(atPath: line.logs.path).filter { $0.hasSuffix(".log") }
        #expect(logFiles.count >= 6)

        // Private key bytes never left the devices but encrypted: not in any output, log, file
        // left behind (escrow objects are ciphertext) or database row.
        try await line.expectNoKeyMaterial(in: [photons, borons])

        // Running the pipeline again touches nothing: every device is already provisioned.
        let again = try await line.keyline(["provision", ProvisionLine.pipeline("photon-factory.yaml"), "--json"])
        #expect(again.status == 0, "\(again.stderr)")
        let reports = ProvisionLine.summary(again)?["devices"] as? [[String: Any]] ?? []
        #expect(reports.allSatisfy { $0["outcome"] as? String == "skipped" })
    }

    @Test("a device unplugged mid-flash fails alone, with its port; the others finish; --resume finishes it")
    func unpluggedMidFlash() async throws {
        let line = try await ProvisionLine(timeScale: 0.05, seed: 22) { fleet in
            // The victim flashes 20× slower (a worn part): its flash lasts seconds, not a fraction
            // of one, so the unplug lands mid-flash however late a loaded host runs the check.
            try fleet.add(.photon, at: Self.port(1, 1), mode: .dfu, faults: SimulatedFaults(slowdown: 20))
            for index in 2...4 { try fleet.add(.photon, at: Self.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        let victim = try #require(line.fleet.device(at: Self.port(1, 1)))
        // Unplug the first device once its flash has started.
        let unplugger = Task {
            try await waitUntil(poll: .milliseconds(5), "victim.statistics.bytesProgrammed > 0") { victim.statistics.bytesProgrammed > 0 }
            victim.unplug()
        }
        let first = try await line.keyline(["provision", ProvisionLine.pipeline("photon-factory.yaml"), "--json", "--timeout", "2"])
        try await unplugger.value
        #expect(first.status == 3, "\(first.stderr)\n\(first.stdout.suffix(2000))")
        let summary = try #require(ProvisionLine.summary(first))
        let reports = summary["devices"] as? [[String: Any]] ?? []
        let failed = reports.filter { $0["outcome"] as? String == "failed" }
        #expect(failed.count == 1)
        #expect(failed.first?["deviceID"] as? String == victim.deviceID)
        #expect(failed.first?["port"] as? String == "1-1.1")
        #expect(reports.filter { $0["outcome"] as? String == "done" }.count == 3)
        let job = try #require(summary["jobID"] as? Int)

        victim.plugIn(mode: .dfu)
        let resumed = try await line.keyline(["provision", ProvisionLine.pipeline("photon-factory.yaml"), "--json",
                                              "--resume", String(job)])
        #expect(resumed.status == 0, "\(resumed.stderr)\n\(resumed.stdout.suffix(2000))")
        try await line.checkInvariants(product: summary["product"] as? String ?? "", devices: line.fleet.allDevices.map(\.device))
    }

    @Test("an invalid pipeline is refused before any device is touched, every problem with its line")
    func invalidPipeline() async throws {
        let line = try await ProvisionLine(seed: 23) { fleet in
            try fleet.add(.photon, at: Self.port(1, 1), mode: .dfu)
        }
        defer { Task { await line.stop() } }
        let before = line.fleet.allDevices[0].device.statistics.controlTransfers
        let file = line.scratch.url.appendingPathComponent("broken.yaml")
        var text = try String(contentsOfFile: ProvisionLine.pipeline("photon-factory.yaml"), encoding: .utf8)
        text += "\nconcurrencyy: 4\n"
        try text.write(to: file, atomically: true, encoding: .utf8)
        let result = try await line.keyline(["provision", file.path])
        #expect(result.status == 65, "\(result.stderr)")
        #expect(result.stderr.contains("broken.yaml:"))
        #expect(result.stderr.contains("concurrencyy"))
        #expect(line.fleet.allDevices[0].device.statistics.controlTransfers == before)
    }
}
