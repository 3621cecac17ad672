import DeviceBus
import ParticlePlatform
import Foundation
import ParticleDevice
import Simulator
import Testing
import TestSupport

/// keyline's real `USB` code (libusb calls) through the libusb stand-in into the simulator: the
/// long way every device operation takes on a station, without hardware.
@Suite struct USBPathTests {
    /// A zero-latency fleet served in-process; keyline runs as a child loaded with the stand-in.
    struct Served {
        let fleet: SimulatedFleet
        let server: StandInServer
        let environment: [String: String]
        let scratch: URL

        init(seed: UInt64 = 11, _ build: (SimulatedFleet) throws -> Void) throws {
            fleet = try SimulatedFleet(timeScale: 0, seed: seed)
            try build(fleet)
            server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet)
            try server.start()
            environment = try Subprocess.standInEnvironment(socket: server.socketPath)
            scratch = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-usb-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        }

        func keyline(_ arguments: [String]) async throws -> ChildProcess.Result {
            try await Subprocess.run(Subprocess.keyline, arguments, environment: environment)
        }

        func stop() {
            server.stop()
            try? FileManager.default.removeItem(at: scratch)
        }
    }

    struct Row: Decodable, Equatable {
        var port: String
        var mode: String
        var platform: String?
        var deviceID: String?
        var vendorID: String
        var productID: String
    }

    static func rows(_ result: ChildProcess.Result) throws -> [Row] {
        try result.lines.map { try JSONDecoder().decode(Row.self, from: Data($0.utf8)) }
    }

    @Test func devicesListsTheFleet() async throws {
        let served = try Served { fleet in
            for index in 1...3 { try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [1, UInt8(index)]), mode: .dfu) }
            for index in 1...2 { try fleet.add(.boron, at: USBPortPath(bus: 1, ports: [2, UInt8(index)]), mode: .normal) }
        }
        defer { served.stop() }
        // Normal-mode devices come up after their simulated boot; wait for all five on the bus.
        try await waitUntil(poll: .milliseconds(10), "served.fleet.attachedDevices().count >= 5") { served.fleet.attachedDevices().count >= 5 }

        let result = try await served.keyline(["devices", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let expected = served.fleet.attachedDevices().map { attachment in
            Row(port: attachment.port.description, mode: attachment.mode.rawValue, platform: attachment.device.platform.name,
                deviceID: attachment.serialNumber, vendorID: "2b04", productID: String(attachment.productID, radix: 16))
        }
        #expect(try Self.rows(result) == expected)
    }

    @Test func noUSBAtAllIsAnEmptyList() async throws {
        // The real libusb on a machine without USB devices (these test machines have no bus).
        var environment = ProcessInfo.processInfo.environment
        environment["LD_LIBRARY_PATH"] = nil
        environment["KEYLINE_SIM_SOCKET"] = nil
        let result = try await Subprocess.run(Subprocess.keyline, ["devices", "--json"], environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        if !FileManager.default.fileExists(atPath: "/dev/bus/usb") {
            // No usbfs at all (as on these build machines): nothing, and no error.
            #expect(result.stdout.isEmpty)
        } else {
            // A machine with a USB bus may have real Particle devices attached: every line is a row.
            #expect(throws: Never.self) { try Self.rows(result) }
        }
    }

    @Test func dctSlotReadAndWriteMatchTheInProcessPath() async throws {
        // Two identical fleets (same seed, same device IDs): one driven by keyline over USB, one
        // in-process through SimulatedTransport. Both must end byte-for-byte the same.
        let port = USBPortPath(bus: 1, ports: [1, 1])
        let served = try Served(seed: 5) { try $0.add(.photon, at: port, mode: .dfu) }
        defer { served.stop() }
        let inProcess = try SimulatedFleet(timeScale: 0, seed: 5)
        try inProcess.add(.photon, at: port, mode: .dfu)

        let usbDevice = try #require(served.fleet.device(at: port))
        let localDevice = try #require(inProcess.device(at: port))
        #expect(usbDevice.deviceID == localDevice.deviceID)

        var generator = SplitMix64(seed: 3)
        let slotBytes = (0..<612).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let file = served.scratch.appendingPathComponent("slot.bin")
        try Data(slotBytes).write(to: file)

        let write = try await served.keyline(["dfu", "write", "--serial", usbDevice.deviceID, "--alt", "1", "--address", "34", file.path])
        #expect(write.status == 0, "\(write.stdout)\n\(write.stderr)")
        let readFile = served.scratch.appendingPathComponent("read.bin")
        let read = try await served.keyline(["dfu", "read", "--serial", usbDevice.deviceID, "--alt", "1", "--address", "0x22",
                                             "--length", "612", "-o", readFile.path])
        #expect(read.status == 0, "\(read.stdout)\n\(read.stderr)")
        let overUSB = try [UInt8](Data(contentsOf: readFile))

        let transport = try #require(localDevice.transport)
        let local = try await ParticleDFUDevice.open(transport, port: port)
        try await local.writeDCT(slotBytes, at: DCTSlot(offset: 34, size: 612), step: .writeKey)
        let inProcessRead = try await local.readDCT(DCTSlot(offset: 34, size: 612), step: .readKey)

        #expect(overUSB == slotBytes)
        #expect(overUSB == inProcessRead)
        // The whole DCT, not just the slot, ends identical.
        #expect(try usbDevice.readMemory(alt: 1, address: 0, length: 0x4000) == localDevice.readMemory(alt: 1, address: 0, length: 0x4000))
    }

    @Test func aNormalModeDeviceSwitchedToDFUIsFoundAgainBySerial() async throws {
        let port = USBPortPath(bus: 2, ports: [3])
        let served = try Served { try $0.add(.boron, at: port, mode: .normal) }
        defer { served.stop() }
        let boron = try #require(served.fleet.device(at: port))
        try await waitUntil(poll: .milliseconds(10), "!served.fleet.attachedDevices().isEmpty") { !served.fleet.attachedDevices().isEmpty }

        let before = try Self.rows(try await served.keyline(["devices", "--json"]))
        #expect(before == [Row(port: "2-3", mode: "normal", platform: "boron", deviceID: boron.deviceID, vendorID: "2b04", productID: "c00d")])

        let enter = try await served.keyline(["dfu", "enter", "--serial", boron.deviceID, "--json"])
        #expect(enter.status == 0, "\(enter.stdout)\n\(enter.stderr)")
        let reply = try JSONDecoder().decode([String: String].self, from: Data(enter.stdout.utf8))
        #expect(reply["deviceID"] == boron.deviceID)
        #expect(reply["productID"] == "d00d")
        #expect(reply["port"] == "2-3")

        let after = try Self.rows(try await served.keyline(["devices", "--json"]))
        #expect(after == [Row(port: "2-3", mode: "dfu", platform: "boron", deviceID: boron.deviceID, vendorID: "2b04", productID: "d00d")])

        // And back: leaving DFU mode re-enumerates it in normal mode, same serial, same port.
        let leave = try await served.keyline(["dfu", "leave", "--serial", boron.deviceID])
        #expect(leave.status == 0, "\(leave.stdout)\n\(leave.stderr)")
        var back: [Row] = []
        for _ in 0..<100 {
            back = try Self.rows(try await served.keyline(["devices", "--json"]))
            if back.first?.mode == "normal" { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(back == before)
    }

    @Test func waitingForReenumerationLeavesOtherDevicesAlone() async throws {
        // Real time, so the boron takes a while to come back in DFU mode and the wait polls many
        // times. Photons (another platform) must not be opened while it does: a device mid-flash
        // gets no GET_DESCRIPTOR from a station waiting for some other device.
        let fleet = try SimulatedFleet(timeScale: 1, seed: 17)
        let boron = try fleet.add(.boron, at: USBPortPath(bus: 1, ports: [1]), mode: .normal)
        let photons = try (2...4).map { try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [UInt8($0)]), mode: .dfu) }
        let server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet)
        try server.start()
        defer { server.stop() }
        let environment = try Subprocess.standInEnvironment(socket: server.socketPath)
        try await waitUntil(poll: .milliseconds(10), "fleet.attachedDevices().count >= 4") { fleet.attachedDevices().count >= 4 }
        func photonTransfers() -> Int { photons.reduce(0) { $0 + $1.statistics.controlTransfers } }

        // What one full listing (strings of every device) costs the photons, once the server
        // has read and cached their descriptors (the first listing does).
        _ = try await Subprocess.run(Subprocess.keyline, ["devices", "--json"], environment: environment)
        let before = photonTransfers()
        let listed = try await Subprocess.run(Subprocess.keyline, ["devices", "--json"], environment: environment)
        #expect(listed.status == 0, "\(listed.stderr)")
        let oneListing = photonTransfers() - before
        #expect(oneListing > 0)

        // `dfu enter` lists once to find the boron, then waits: the wait adds nothing for them.
        let start = photonTransfers()
        let enter = try await Subprocess.run(Subprocess.keyline, ["dfu", "enter", "--serial", boron.deviceID], environment: environment)
        #expect(enter.status == 0, "\(enter.stdout)\n\(enter.stderr)")
        #expect(photonTransfers() - start == oneListing)
    }

    @Test func simServeServesUntilStopped() async throws {
        let socket = Subprocess.socketPath()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-sim-state-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: state) }
        let serve = try Subprocess.Background(Subprocess.keylineSim, ["serve", "--socket", socket, "--fleet", "photon:2,boron:1",
                                                                   "--mode", "dfu", "--time-scale", "0", "--state", state.path])
        try await serve.waitForSocket(socket)
        let environment = try Subprocess.standInEnvironment(socket: socket)
        let listed = try Self.rows(try await Subprocess.run(Subprocess.keyline, ["devices", "--json"], environment: environment))
        #expect(listed.map(\.port) == ["1-1.1", "1-1.2", "1-2.1"])
        #expect(listed.map(\.platform) == ["photon", "photon", "boron"])
        #expect(listed.allSatisfy { $0.mode == "dfu" && $0.deviceID?.count == 24 })
        #expect(await serve.stop() == 0)

        // The saved state brings the same devices back.
        let again = try Subprocess.Background(Subprocess.keylineSim, ["serve", "--socket", socket, "--fleet", "argon:5",
                                                                   "--time-scale", "0", "--state", state.path])
        try await again.waitForSocket(socket)
        let relisted = try Self.rows(try await Subprocess.run(Subprocess.keyline, ["devices", "--json"], environment: environment))
        #expect(relisted.map(\.deviceID) == listed.map(\.deviceID))
        #expect(await again.stop() == 0)
    }
    @Test func aDeviceHeldByDFUUtilIsReportedBusy() async throws {
        // Real time (time scale 1): dfu-util spends seconds erasing external flash while it holds
        // the DFU interface; keyline must say the device is in use, not fail obscurely.
        let port = USBPortPath(bus: 1, ports: [4])
        let fleet = try SimulatedFleet(timeScale: 1, seed: 8)
        let boron = try fleet.add(.boron, at: port, mode: .dfu)
        let server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet)
        try server.start()
        defer { server.stop() }
        let environment = try Subprocess.standInEnvironment(socket: server.socketPath)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-busy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let image = scratch.appendingPathComponent("image.bin")
        // 3 MiB of the Boron's 4 MiB external flash: dfu-util holds the interface for about 35 s of
        // erasing and writing (4 KB sectors, 45 ms each), even on a loaded host where keyline
        // starts slowly (with 1 MiB, dfu-util once finished first). It is stopped after the read.
        try Data(repeating: 0x5A, count: 3 * 1024 * 1024).write(to: image)

        // A read that got the device proves nothing when dfu-util had already ended: then the whole
        // exchange is tried again, at most three times.
        for attempt in 1...3 {
            let erasedBefore = boron.statistics.sectorsErased
            let holder = try Subprocess.Background("/usr/bin/dfu-util", ["-S", boron.deviceID, "-a", "2", "-s", "0x80000000", "-D", image.path],
                                                   environment: environment)
            // Wait until dfu-util is past probing and erasing (it has claimed the interface by then).
            let deadline = ContinuousClock.now + .seconds(60)
            while boron.statistics.sectorsErased == erasedBefore && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(boron.statistics.sectorsErased > erasedBefore, "dfu-util never started erasing: \(holder.output)")

            let read = try await Subprocess.run(Subprocess.keyline, ["dfu", "read", "--serial", boron.deviceID, "--alt", "1",
                                                                         "--address", "0", "--length", "16", "-o", scratch.appendingPathComponent("read-\(attempt)").path],
                                                     environment: environment)
            let holderEndedFirst = read.status == 0 && !holder.process.isRunning
            let holderOutput = holder.output
            // SIGKILL: dfu-util does not stop for SIGTERM until its transfer is done.
            if holder.process.isRunning { kill(holder.process.processIdentifier, SIGKILL) }
            await holder.stop()
            if holderEndedFirst && attempt < 3 {
                print("dfu-util ended before keyline opened the device (try \(attempt)):\n\(holderOutput.suffix(1500))")
                continue
            }
            #expect(read.status == 69, "\(read.stdout)\n\(read.stderr)\ndfu-util: \(holderOutput)")
            #expect(read.stderr.contains("in use by another program"), "\(read.stderr)")
            break
        }
    }

    @Test func aDeviceThatDropsOffMidReadIsReportedDisconnected() async throws {
        let port = USBPortPath(bus: 1, ports: [5])
        let served = try Served { try $0.add(.boron, at: port, mode: .dfu, faults: SimulatedFaults(disconnectAfterTransfers: 40)) }
        defer { served.stop() }
        let boron = try #require(served.fleet.device(at: port))

        let read = try await served.keyline(["dfu", "read", "--serial", boron.deviceID, "--alt", "2", "--address", "0x80000000",
                                             "--length", "\(512 * 1024)", "-o", served.scratch.appendingPathComponent("x").path])
        #expect(read.status == 69, "\(read.stdout)\n\(read.stderr)")
        #expect(read.stderr.contains("disconnected"), "\(read.stderr)")
        // The message names the device and the port, not just the alt and address.
        #expect(read.stderr.contains(boron.deviceID) && read.stderr.contains("port 1-5"), "\(read.stderr)")
        #expect(!FileManager.default.fileExists(atPath: served.scratch.appendingPathComponent("x").path))
    }
    @Test func aProtectedDeviceIsRefusedAndNoFileIsWritten() async throws {
        let port = USBPortPath(bus: 1, ports: [6])
        let served = try Served { try $0.add(.boron, at: port, mode: .dfu, protected: true) }
        defer { served.stop() }
        let boron = try #require(served.fleet.device(at: port))
        let output = served.scratch.appendingPathComponent("key.bin")

        let read = try await served.keyline(["dfu", "read", "--serial", boron.deviceID, "--alt", "1", "--address", "3106",
                                             "--length", "192", "-o", output.path, "--json"])
        #expect(read.status == 69, "\(read.stdout)\n\(read.stderr)")
        let reply = try JSONSerialization.jsonObject(with: Data(read.stdout.utf8)) as? [String: Any]
        let error = try #require(reply?["error"] as? [String: Any])
        #expect(error["kind"] as? String == "deviceProtected")
        let context = error["context"] as? [String: String]
        #expect(context?["alt"] == "1")
        #expect(context?["deviceID"] == boron.deviceID)
        #expect(context?["port"] == "1-6")
        #expect(!FileManager.default.fileExists(atPath: output.path))

        // A write is refused the same way, naming the device and port too.
        let input = served.scratch.appendingPathComponent("blob.bin")
        try Data(repeating: 0xA5, count: 16).write(to: input)
        let write = try await served.keyline(["dfu", "write", "--serial", boron.deviceID, "--alt", "1", "--address", "3106",
                                              input.path, "--json"])
        #expect(write.status == 69, "\(write.stdout)\n\(write.stderr)")
        let writeReply = try JSONSerialization.jsonObject(with: Data(write.stdout.utf8)) as? [String: Any]
        let writeError = try #require(writeReply?["error"] as? [String: Any])
        #expect(writeError["kind"] as? String == "deviceProtected")
        #expect((writeError["context"] as? [String: String])?["deviceID"] == boron.deviceID)
        #expect((writeError["context"] as? [String: String])?["port"] == "1-6")
        #expect((writeError["message"] as? String)?.contains("at port 1-6") == true)
    }

    @Test func simServeRejectsABadSpecWithAUsageError() async throws {
        let bad = try await Subprocess.run(Subprocess.keylineSim, ["serve", "--socket", Subprocess.socketPath(),
                                                                    "--fleet", "photon:2", "--faults", "1-1.1@explode=3"])
        #expect(bad.status == 64, "\(bad.stderr)")
        #expect(bad.stderr.contains("unknown fault \"explode\""), "\(bad.stderr)")
        let core = try await Subprocess.run(Subprocess.keylineSim, ["serve", "--socket", Subprocess.socketPath(), "--fleet", "core:1"])
        #expect(core.status == 64, "\(core.stderr)")
        #expect(core.stderr.contains("the Core is not simulated"), "\(core.stderr)")
    }
    @Test func aPortWithoutPermissionIsListedWithTheUdevHintAndRefused() async throws {
        let open = USBPortPath(bus: 1, ports: [1, 1]), denied = USBPortPath(bus: 1, ports: [1, 2])
        let fleet = try SimulatedFleet(timeScale: 0, seed: 21)
        try fleet.add(.photon, at: open, mode: .dfu)
        try fleet.add(.photon, at: denied, mode: .dfu)
        let server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet, accessDenied: [denied])
        try server.start()
        defer { server.stop() }
        let environment = try Subprocess.standInEnvironment(socket: server.socketPath)

        let listed = try await Subprocess.run(Subprocess.keyline, ["devices", "--json"], environment: environment)
        #expect(listed.status == 0, "\(listed.stderr)")
        let rows = try listed.lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(rows.count == 2)
        #expect(rows.first??["deviceID"] as? String == fleet.device(at: open)?.deviceID)
        // The device is listed (its descriptors need no permission) but its serial cannot be read.
        #expect(rows.last??["port"] as? String == "1-1.2")
        #expect(rows.last??["platform"] as? String == "photon")
        #expect(rows.last??["deviceID"] == nil)
        #expect((rows.last??["error"] as? String)?.contains("50-particle.rules") == true)

        let read = try await Subprocess.run(Subprocess.keyline, ["dfu", "read", "--port", "1-1.2", "--alt", "1", "--address", "0",
                                                                     "--length", "16", "-o", "/tmp/keyline-never-\(UUID().uuidString)", "--json"],
                                                 environment: environment)
        #expect(read.status == 77, "\(read.stdout)\n\(read.stderr)")
        let reply = try JSONSerialization.jsonObject(with: Data(read.stdout.utf8)) as? [String: Any]
        let error = try #require(reply?["error"] as? [String: Any])
        #expect(error["kind"] as? String == "accessDenied")
        #expect((error["message"] as? String)?.contains("udev") == true)
    }
}
