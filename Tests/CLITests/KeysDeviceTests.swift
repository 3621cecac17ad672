import DFU
import DeviceKeys
import Foundation
import ParticleDevice
import Simulator
import Testing
import TestSupport

/// `keyline keys save|load` on simulated devices through the libusb stand-in, for a TCP (Photon)
/// and a UDP (Boron) platform: particle-cli's file names, --force, load's backup, dfu-util interop.
@Suite("keyline keys on a device", .serialized)
struct KeysDeviceTests {
    static let dfuUtil = "/usr/bin/dfu-util"

    @Test("save and load: file names, --force, the backup, and dfu-util reads back what load wrote",
          arguments: [Platform.photon, Platform.boron])
    func saveAndLoad(platform: Platform) async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 51)
        let device = try fleet.add(platform, at: USBPortPath(bus: 1, ports: [1, 1]), mode: .normal)
        let server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet)
        try server.start()
        defer { server.stop() }
        let scratch = try ScratchDirectory(label: "keys-device")
        defer { scratch.remove() }
        let environment = try Subprocess.standInEnvironment(socket: server.socketPath)
        func keyline(_ arguments: [String]) async throws -> ChildProcess.Result {
            try await ChildProcess.run(Subprocess.keyline, arguments, in: scratch.url, environment: environment, timeout: .seconds(120))
        }
        while fleet.attachedDevices().isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        let id = device.deviceID
        // Device OS makes its key at its first start.
        while (try? DevicePrivateKey(slot: device.privateKeySlot())) == nil {
            if device.statistics.keysGenerated == 0 && device.privateKeySlot().first == 0xFF { device.plugIn(mode: .normal) }
            try await Task.sleep(for: .milliseconds(50))
        }
        while fleet.attachedDevices().isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        let original = try DevicePrivateKey(slot: device.privateKeySlot())

        // save: <id>.der is the whole slot, <id>.pub.pem its public key.
        let saved = try await keyline(["keys", "save"])
        #expect(saved.status == 0, "\(saved.stderr)")
        let der = try Data(contentsOf: scratch.url.appendingPathComponent("\(id).der"))
        #expect(Array(der) == device.privateKeySlot())
        #expect(der.count == platform.privateKeySlot.size)
        let pem = try String(contentsOf: scratch.url.appendingPathComponent("\(id).pub.pem"), encoding: .utf8)
        #expect(pem == original.publicKey.pem)
        // Never overwritten without --force.
        let again = try await keyline(["keys", "save", "--device", id])
        #expect(again.status == 73)
        #expect(try await keyline(["keys", "save", "--device", id, "--force"]).status == 0)

        // load: a new key, the backup of the old slot first, then dfu-util reads the new key back.
        let made = try await keyline(["keys", "new", "--platform", platform.name, "fresh"])
        #expect(made.status == 0, "\(made.stderr)")
        let fresh = try KeyFile.parse(Array(try Data(contentsOf: scratch.url.appendingPathComponent("fresh.der")))).privateKey!
        let loaded = try await keyline(["keys", "load", "fresh.der"])
        #expect(loaded.status == 0, "\(loaded.stderr)")
        let alg = platform.keyAlgorithm.rawValue
        let backup = try Data(contentsOf: scratch.url.appendingPathComponent("backup_\(alg)_fresh.der"))
        #expect(Array(backup) == Array(der))
        #expect(FileManager.default.fileExists(atPath: scratch.url.appendingPathComponent("backup_\(alg)_fresh.pub.pem").path))
        #expect(try DevicePrivateKey(slot: device.privateKeySlot()).der == fresh.der)
        // A second load would overwrite the backup: refused, nothing written.
        #expect(try await keyline(["keys", "load", "fresh.der"]).status == 73)

        let slot = platform.privateKeySlot
        let dump = try await ChildProcess.run(Self.dfuUtil, ["-d", "2b04:\(String(format: "%04x", platform.dfuProductID))", "-a", "1",
                                                             "-s", "\(slot.offset):\(slot.size)", "-U", "readback.der"],
                                              in: scratch.url, environment: environment, timeout: .seconds(120))
        #expect(dump.status == 0, "\(dump.stderr)")
        let readBack = try Data(contentsOf: scratch.url.appendingPathComponent("readback.der"))
        #expect(Array(readBack.prefix(fresh.der.count)) == fresh.der)
        #expect(Array(readBack) == device.privateKeySlot())
    }

    @Test("several devices without --device: an error listing them")
    func severalDevices() async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 52)
        for index in 1...2 { try fleet.add(.boron, at: USBPortPath(bus: 1, ports: [1, UInt8(index)]), mode: .dfu) }
        let server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet)
        try server.start()
        defer { server.stop() }
        while fleet.attachedDevices().count < 2 { try await Task.sleep(for: .milliseconds(10)) }
        let result = try await ChildProcess.run(Subprocess.keyline, ["keys", "save"],
                                                environment: try Subprocess.standInEnvironment(socket: server.socketPath),
                                                timeout: .seconds(60))
        #expect(result.status == 64)
        #expect(result.stderr.contains("Multiple devices found"))
        for (_, device) in fleet.allDevices { #expect(result.stderr.contains(device.deviceID)) }
    }
}
