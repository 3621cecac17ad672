import DFU
import DeviceBus
import ParticlePlatform
import Foundation
import Simulator
import Testing
import TestSupport

/// Debian's unmodified dfu-util, through the libusb stand-in, against the device simulator:
/// proves the simulator speaks DfuSe the way real Particle bootloaders do.
@Suite struct StandInDFUUtilTests {
    static let dfuUtil = "/usr/bin/dfu-util"

    /// A fleet at zero latency served on a fresh socket.
    struct Served {
        let fleet: SimulatedFleet
        let server: StandInServer
        let environment: [String: String]
        let scratch: URL

        init(_ platforms: [(Platform, USBPortPath)], mode: USBMode = .dfu, protected: Bool = false) throws {
            fleet = try SimulatedFleet(timeScale: 0, seed: 42)
            for (platform, port) in platforms { try fleet.add(platform, at: port, mode: mode, protected: protected) }
            server = StandInServer(socketPath: StandInSupport.socketPath(), fleet: fleet)
            try server.start()
            environment = try StandInSupport.environment(socket: server.socketPath)
            scratch = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-dfu-util-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        }

        func dfuUtil(_ arguments: [String]) async throws -> ChildProcess.Result {
            try await ChildProcess.run(StandInDFUUtilTests.dfuUtil, arguments, in: scratch, environment: environment, timeout: .seconds(120))
        }

        func device(at port: USBPortPath) throws -> SimulatedDevice {
            try #require(fleet.device(at: port))
        }

        func stop() {
            server.stop()
            try? FileManager.default.removeItem(at: scratch)
        }
    }

    static let photonPort = USBPortPath(bus: 1, ports: [1, 1])
    static let boronPort = USBPortPath(bus: 1, ports: [2, 1])

    /// KEYLINE_STANDIN_DEBUG=1 logs every libusb call, claim and set-alt included.
    @Test func debugLogNamesClaimAndSetAlt() async throws {
        let served = try Served([(.photon, Self.photonPort)])
        defer { served.stop() }
        var environment = served.environment
        environment["KEYLINE_STANDIN_DEBUG"] = "1"
        let result = try await ChildProcess.run(Self.dfuUtil, ["-a", "1", "-s", "0x0:16", "-U", "dct.bin"], in: served.scratch,
                                                environment: environment, timeout: .seconds(120))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("libusb-standin: libusb_claim_interface(id "), "\(result.stderr)")
        #expect(result.stderr.contains("libusb-standin: libusb_set_interface_alt_setting(id "), "\(result.stderr)")
    }

    @Test func listsTheFleetWithAltNamesAndSerials() async throws {
        let served = try Served([(.photon, Self.photonPort), (.photon, USBPortPath(bus: 1, ports: [1, 2])), (.boron, Self.boronPort)])
        defer { served.stop() }
        let result = try await served.dfuUtil(["-l"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").filter { $0.hasPrefix("Found DFU: ") }
        // Photon: 2 alts each; Boron: 3.
        #expect(lines.count == 7, "\(result.stdout)")
        for (port, device) in served.fleet.allDevices {
            let hardware = try #require(SimulatedHardware.forPlatform(device.platform))
            for (alt, altHardware) in hardware.alts.enumerated() {
                let expected = "[2b04:\(String(device.platform.dfuProductID, radix: 16))] ver=\(String(format: "%04x", hardware.dfuDeviceVersion)), "
                let tail = #"path="\#(port)", alt=\#(alt), name="\#(altHardware.layoutString)", serial="\#(device.deviceID)""#
                #expect(lines.contains { $0.contains(expected) && $0.hasSuffix(tail) }, "missing \(expected)…\(tail)")
            }
        }
    }

    @Test func uploadsExactlyTheDCTKeySlot() async throws {
        let served = try Served([(.photon, Self.photonPort), (.boron, Self.boronPort)])
        defer { served.stop() }
        let photon = try served.device(at: Self.photonPort)
        var generator = SplitMix64(seed: 7)
        let slot = (0..<612).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        try photon.writeMemory(alt: 1, address: 34, bytes: slot)

        let result = try await served.dfuUtil(["-S", photon.deviceID, "-a", "1", "-s", "34:612", "-U", "slot.bin"])
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        let uploaded = try [UInt8](Data(contentsOf: served.scratch.appendingPathComponent("slot.bin")))
        #expect(uploaded == slot)
        #expect(uploaded == (try photon.readMemory(alt: 1, address: 34, length: 612)))
    }

    @Test func downloadsFirmwareThatReadsBackIdenticalAndLeaves() async throws {
        let served = try Served([(.photon, Self.photonPort)])
        defer { served.stop() }
        let photon = try served.device(at: Self.photonPort)
        var generator = SplitMix64(seed: 99)
        let image = (0..<150_000).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        try Data(image).write(to: served.scratch.appendingPathComponent("image.bin"))

        let result = try await served.dfuUtil(["-S", photon.deviceID, "-a", "0", "-s", "0x08020000:leave", "-D", "image.bin"])
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("File downloaded successfully") || result.stdout.contains("Download done"), "\(result.stdout)")
        #expect(try photon.readMemory(alt: 0, address: 0x0802_0000, length: image.count) == image)
        // Bytes after the image in its last 128 KB sector were erased (0xFF), not left over.
        #expect(try photon.readMemory(alt: 0, address: 0x0802_0000 + UInt32(image.count), length: 16) == [UInt8](repeating: 0xFF, count: 16))
        // :leave — the bootloader resets into the application (normal mode) after the leave request.
        let deadline = ContinuousClock.now + .seconds(10)
        while photon.currentMode != .normal && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(photon.currentMode == .normal)
    }

    @Test func aProtectedDeviceFailsAsOnHardware() async throws {
        let served = try Served([(.boron, Self.boronPort)], protected: true)
        defer { served.stop() }
        let boron = try served.device(at: Self.boronPort)

        let result = try await served.dfuUtil(["-S", boron.deviceID, "-a", "1", "-s", "3106:192", "-U", "key.bin"])
        // Protected Device mode advertises the DCT as `…Kb` (neither readable nor writeable), so
        // dfu-util refuses before transferring anything (device-os-keys.md §2): EX_USAGE.
        #expect(result.status == 64, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stderr.contains("Page at 0x00000c22 is not readable"), "\(result.stderr)")
        let keyFile = served.scratch.appendingPathComponent("key.bin")
        let leaked = FileManager.default.fileExists(atPath: keyFile.path) ? try Data(contentsOf: keyFile) : Data()
        #expect(leaked.isEmpty)

        try Data(repeating: 0x30, count: 192).write(to: served.scratch.appendingPathComponent("new-key.bin"))
        let write = try await served.dfuUtil(["-S", boron.deviceID, "-a", "1", "-s", "3106", "-D", "new-key.bin"])
        #expect(write.status == 64, "\(write.stdout)\n\(write.stderr)")
        #expect(write.stderr.contains("is not writeable"), "\(write.stderr)")

        // Forced past the layout check, the bootloader itself refuses: dfuERROR with errVENDOR
        // after the first DfuSe command, which dfu-util reports as a protocol error (EX_PROTOCOL).
        let forced = try await served.dfuUtil(["-S", boron.deviceID, "-a", "1", "-s", "3106:192:force", "-U", "forced.bin"])
        #expect(forced.status == 76, "\(forced.stdout)\n\(forced.stderr)")
        #expect((forced.stdout + forced.stderr).contains("status(11) = iString indicates a vendor specific error"), "\(forced.stdout)\n\(forced.stderr)")
        #expect(try boron.readMemory(alt: 1, address: 3106, length: 192) != [UInt8](repeating: 0x30, count: 192))
    }
}
