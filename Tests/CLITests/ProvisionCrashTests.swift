import DeviceBus
import DeviceKeys
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// The crash-safety contract: `keyline provision` killed with SIGKILL at random moments of a
/// batch, then `--resume`d, always ends with every device provisioned, no registered key without
/// a matching backup, no key lost or replaced on a device, and no device with two active keys.
@Suite("keyline provision under SIGKILL", .serialized)
struct ProvisionCrashTests {
    /// Starts keyline with `arguments` and kills it with SIGKILL after `delay` (if still running).
    /// Returns true when the kill landed on a running process.
    static func runAndKill(_ line: ProvisionLine, _ arguments: [String], after delay: Duration) async throws -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Subprocess.keyline)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(line.environment) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        try await Task.sleep(for: delay)
        let killed = process.isRunning && kill(process.processIdentifier, SIGKILL) == 0
        await process.waitForExit()
        return killed && process.terminationReason == .uncaughtSignal
    }

    /// Every device's key slot as it is now: once a device holds a valid key, it must keep it.
    static func keys(_ fleet: SimulatedFleet) -> [String: String] {
        var keys: [String: String] = [:]
        for (_, device) in fleet.allDevices {
            if let key = try? DevicePrivateKey(slot: device.privateKeySlot()) { keys[device.deviceID] = key.publicKey.fingerprint }
        }
        return keys
    }

    @Test("killed at 20 random points, resumed every time: every invariant holds")
    func killedAndResumed() async throws {
        // Photons in DFU mode with blank slots (keyline generates their keys) and in normal mode
        // (they made their own at boot), with the timing model on so kills land mid-step. The
        // scale makes a batch last about as long as the kill delays (30–1200 ms): since the DCT's
        // poll timeouts follow the time scale too (issue 13), 0.02 let batches end too soon.
        let line = try await ProvisionLine(timeScale: 0.15, seed: 31) { fleet in
            for index in 1...3 { try fleet.add(.photon, at: ProvisionTests.port(1, index), mode: .dfu) }
            for index in 4...6 { try fleet.add(.photon, at: ProvisionTests.port(1, index), mode: .normal) }
        }
        defer { Task { await line.stop() } }
        try await waitUntil(poll: .milliseconds(10), "line.fleet.attachedDevices().count >= 6") { line.fleet.attachedDevices().count >= 6 }
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")
        let registry = try await line.registry()

        var seen = Self.keys(line.fleet)
        var kills = 0
        var batches = 0
        var generator = SystemRandomNumberGenerator()
        while kills < 20 {
            batches += 1
            #expect(batches <= 12, "the batches end before the kills land: \(kills) kills in \(batches) batches")
            if batches > 12 { break }
            if batches > 1 {
                // A new batch of fresh devices on new ports, half of them in normal mode.
                for index in 1...4 {
                    try line.fleet.add(.photon, at: USBPortPath(bus: 1, ports: [UInt8(batches + 1), UInt8(index)]),
                                       mode: index <= 2 ? .dfu : .normal)
                }
                try await Task.sleep(for: .milliseconds(300))
            }
            var arguments = ["provision", pipeline, "--json", "--timeout", "5"]
            var job: Int64?
            for _ in 0..<8 where kills < 20 {
                let delay = Duration.milliseconds(Int.random(in: 30...1200, using: &generator))
                let killed = try await Self.runAndKill(line, arguments, after: delay)
                if killed { kills += 1 }
                if job == nil {
                    job = try await registry.unfinishedJobs(station: "test-station").last?.id
                }
                if let job { arguments = ["provision", pipeline, "--json", "--timeout", "5", "--resume", String(job)] }
                // No key the devices held was ever replaced.
                let now = Self.keys(line.fleet)
                for (device, fingerprint) in seen {
                    #expect(now[device] == fingerprint, "device \(device)'s key \(fingerprint) was replaced or lost")
                }
                seen.merge(now) { old, _ in old }
                if !killed { break }   // the batch finished before the kill: on to a new one
            }
            // The last run of the batch is not killed: it must finish everything.
            let finish = try await line.keyline(arguments)
            #expect(finish.status == 0, "\(finish.stderr)\n\(finish.stdout.suffix(3000))")
        }
        #expect(kills >= 20)

        let products = Set(try await registry.unfinishedJobs(station: "test-station").map(\.productID))
        #expect(products.isEmpty, "jobs left unfinished: \(products)")
        try await line.checkInvariants(product: try ProvisionLine.productID(pipeline), devices: line.fleet.allDevices.map(\.device))
        let now = Self.keys(line.fleet)
        for (device, fingerprint) in seen { #expect(now[device] == fingerprint) }
    }
}
