import DeviceBus
import ParticlePlatform
import DeviceKeys
import Foundation
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
        try await waitUntil(poll: .milliseconds(10), "!fleet.attachedDevices().isEmpty") { !fleet.attachedDevices().isEmpty }
        let id = device.deviceID
        // Device OS makes its key at its first start.
        try await waitUntil(poll: .milliseconds(50), "Device OS to make its key") {
            if (try? DevicePrivateKey(slot: device.privateKeySlot())) != nil { return true }
            if device.statistics.keysGenerated == 0 && device.privateKeySlot().first == 0xFF { device.plugIn(mode: .normal) }
            return false
        }
        try await waitUntil(poll: .milliseconds(10), "!fleet.attachedDevices().isEmpty") { !fleet.attachedDevices().isEmpty }
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

    @Test("new learns the platform, server writes the blob (PEM key on the first run), address reads it",
          arguments: [Platform.photon, Platform.boron])
    func newServerAddress(platform: Platform) async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 53)
        let device = try fleet.add(platform, at: USBPortPath(bus: 1, ports: [1, 1]), mode: .dfu)
        let server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet)
        try server.start()
        defer { server.stop() }
        let scratch = try ScratchDirectory(label: "keys-server")
        defer { scratch.remove() }
        let environment = try Subprocess.standInEnvironment(socket: server.socketPath)
        func keyline(_ arguments: [String]) async throws -> ChildProcess.Result {
            try await ChildProcess.run(Subprocess.keyline, arguments, in: scratch.url, environment: environment, timeout: .seconds(120))
        }
        func file(_ name: String) -> URL { scratch.url.appendingPathComponent(name) }
        try await waitUntil(poll: .milliseconds(10), "!fleet.attachedDevices().isEmpty") { !fleet.attachedDevices().isEmpty }
        let id = device.deviceID
        let dct = { try device.readMemory(alt: 1, address: 0, length: 16 * 1024) }

        // new: the platform (RSA-1024 PKCS#1 for TCP, EC SEC1 for UDP) and the name from the device.
        let before = try dct()
        let made = try await keyline(["keys", "new", "--json"])
        #expect(made.status == 0, "\(made.stderr)")
        let report = try #require(ProvisionLine.events(made).last)
        #expect(report["platform"] as? String == platform.name)
        #expect(report["deviceID"] as? String == id)
        let key = try #require(try KeyFile.parse(Array(try Data(contentsOf: file("\(id).der")))).privateKey)
        #expect(key.algorithm == platform.keyAlgorithm)
        try platform.checkDeviceKey(key)
        for suffix in [".pem", ".pub.pem"] { #expect(FileManager.default.fileExists(atPath: file(id + suffix).path)) }
        #expect(try dct() == before, "keys new wrote to the device")
        #expect(try await keyline(["keys", "new", "--device", id]).status == 73)
        #expect(try await keyline(["keys", "new", "--device", id, "--force"]).status == 0)

        // server: a PEM server key of the platform's kind, host and port; works on the first run.
        let openssl = "/usr/bin/openssl"
        let generate = platform.cloudProtocol == .tcp
            ? ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "srv.pem"]
            : ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "srv.pem"]
        for arguments in [generate, ["pkey", "-in", "srv.pem", "-pubout", "-out", "srv.pub.pem"]] {
            let result = try await ChildProcess.run(openssl, arguments, in: scratch.url, environment: environment, timeout: .seconds(60))
            #expect(result.status == 0, "\(result.stderr)")
        }
        let serverKey = try KeyFile.parse(Array(try Data(contentsOf: file("srv.pub.pem")))).publicKey
        let written = try await keyline(["keys", "server", "srv.pub.pem", "blob.der", "--host", "10.1.2.3", "--port", "5700"])
        #expect(written.status == 0, "\(written.stderr)")
        #expect(written.stdout.contains("Okay!"))
        let serverSlot = platform.serverKeySlot.slot
        let slotBytes = Array(try dct()[serverSlot.range])
        #expect(Array(slotBytes.prefix(serverKey.spkiDER.count)) == serverKey.spkiDER)
        #expect(Array(try Data(contentsOf: file("blob.der"))) == slotBytes)
        #expect(!FileManager.default.fileExists(atPath: file("srv.pub.der").path), "an intermediate .der was left")
        let addressOffset = platform.serverKeySlot.addressOffset
        #expect(Array(slotBytes[addressOffset..<addressOffset + 6]) == [0x00, 0x04, 10, 1, 2, 3])
        #expect(Array(slotBytes[addressOffset + 66..<addressOffset + 68]) == [0x16, 0x44])
        #expect(try await keyline(["keys", "server", "srv.pub.pem", "blob.der", "--host", "10.1.2.3"]).status == 73)

        // address: read from the device, printed as particle-cli prints it.
        let address = try await keyline(["keys", "address", "--device", id])
        #expect(address.status == 0, "\(address.stderr)")
        #expect(address.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(platform.cloudProtocol.rawValue)://10.1.2.3:5700")

        // The default server key with a domain, then address again.
        #expect(try await keyline(["keys", "server", "--host", "$id.example.com"]).status == 0)
        let defaultAddress = try await keyline(["keys", "address", "--json"])
        let decoded = try #require((ProvisionLine.events(defaultAddress).last?["addresses"] as? [[String: Any]])?.first)
        #expect(decoded["host"] as? String == "$id.example.com")
        #expect(decoded["port"] as? Int == Int(platform.cloudProtocol.defaultPort))

        // A protected device (Device Protection exists from Gen 3 on): refused, nothing written.
        guard platform.generation > 2 else { return }
        device.setProtected(true)
        let closed = try dct()
        let refused = try await keyline(["keys", "server", "--host", "10.9.9.9"])
        #expect(refused.status == 69, "\(refused.stderr)")
        #expect(try dct() == closed)
    }

    @Test("several devices without --device: an error listing them")
    func severalDevices() async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 52)
        for index in 1...2 { try fleet.add(.boron, at: USBPortPath(bus: 1, ports: [1, UInt8(index)]), mode: .dfu) }
        let server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet)
        try server.start()
        defer { server.stop() }
        try await waitUntil(poll: .milliseconds(10), "fleet.attachedDevices().count >= 2") { fleet.attachedDevices().count >= 2 }
        let result = try await ChildProcess.run(Subprocess.keyline, ["keys", "save"],
                                                environment: try Subprocess.standInEnvironment(socket: server.socketPath),
                                                timeout: .seconds(60))
        #expect(result.status == 64)
        #expect(result.stderr.contains("Multiple devices found"))
        for (_, device) in fleet.allDevices { #expect(result.stderr.contains(device.deviceID)) }
    }
}
