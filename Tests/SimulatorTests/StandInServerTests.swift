import DFU
import DeviceBus
import Foundation
import Simulator
import Testing
import TestSupport

/// The stand-in server and the C libusb stand-in, driven by Debian's unmodified dfu-util.
@Suite struct StandInServerTests {
    static let dfuUtil = "/usr/bin/dfu-util"

    func serve(_ fleet: some StandInFleet) throws -> StandInServer {
        let server = StandInServer(socketPath: StandInSupport.socketPath(), fleet: fleet)
        try server.start()
        return server
    }

    @Test func dfuUtilListsEveryAlternateSettingWithNameAndSerial() async throws {
        let photon = DescriptorOnlyDevice(serial: "3a002b000d47353033323637")
        let boron = DescriptorOnlyDevice(serial: "e00fce68aabbccddeeff0011", productID: 0xD00D, alternateNames: [
            "@Internal Flash   /0x00000000/1*004Ka,47*004Kg,192*004Kg,4*004Kg,4*004Kg,8*004Ka",
            "@DCT Flash   /0x00000000/1*016Ke",
            "@External Flash   /0x80000000/1024*004Kg",
        ])
        let server = try serve(ScriptedFleet([
            StandInAttachedDevice(portPath: USBPortPath(bus: 1, ports: [2, 3]), enumeration: 1, transport: photon),
            StandInAttachedDevice(portPath: USBPortPath(bus: 1, ports: [2, 4]), enumeration: 1, transport: boron),
        ]))
        defer { server.stop() }

        let result = try await ChildProcess.run(Self.dfuUtil, ["-l"], environment: try StandInSupport.environment(socket: server.socketPath), timeout: .seconds(120))
        #expect(result.status == 0, "\(result.stderr)")
        let found = result.stdout.split(separator: "\n").filter { $0.hasPrefix("Found DFU: ") }
        #expect(found.count == 5)
        // dfu-util prints the highest alt first (dfu-protocol.md §3.2).
        #expect(found.contains { $0.contains("[2b04:d006]") && $0.contains(#"path="1-2.3", alt=1, name="@DCT Flash   /0x00000000/01*016Kg", serial="3a002b000d47353033323637""#) })
        #expect(found.contains { $0.contains("[2b04:d006]") && $0.contains(#"alt=0, name="@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg""#) })
        #expect(found.contains { $0.contains("[2b04:d00d]") && $0.contains(#"path="1-2.4", alt=2, name="@External Flash   /0x80000000/1024*004Kg", serial="e00fce68aabbccddeeff0011""#) })
        #expect(found.allSatisfy { $0.contains("ver=0250") && $0.contains("cfg=1, intf=0") })
        // The functional descriptor was found in the last alt's `extra`: no fallback request, no warning.
        #expect(!result.stderr.contains("functional descriptor"), "\(result.stderr)")
    }

    @Test func devicesAppearAndDisappearBetweenListings() async throws {
        let fleet = ScriptedFleet([])
        let server = try serve(fleet)
        defer { server.stop() }
        let environment = try StandInSupport.environment(socket: server.socketPath)

        let empty = try await ChildProcess.run(Self.dfuUtil, ["-l"], environment: environment, timeout: .seconds(120))
        #expect(empty.status == 0)
        #expect(!empty.stdout.contains("Found DFU"))

        fleet.set([StandInAttachedDevice(portPath: USBPortPath(bus: 3, ports: [1]), enumeration: 7,
                                         transport: DescriptorOnlyDevice(serial: "0123456789abcdef01234567"))])
        let one = try await ChildProcess.run(Self.dfuUtil, ["-l"], environment: environment, timeout: .seconds(120))
        #expect(one.stdout.split(separator: "\n").filter { $0.contains(#"serial="0123456789abcdef01234567""#) }.count == 2)
        #expect(one.stdout.contains(#"path="3-1""#))
    }

    @Test func noSimulatorNamedMeansNoDevices() async throws {
        let result = try await ChildProcess.run(Self.dfuUtil, ["-l"], environment: ["LD_LIBRARY_PATH": try StandInSupport.libraryDirectory()],
                                                unsetting: ["KEYLINE_SIM_SOCKET"], timeout: .seconds(120))
        #expect(result.status == 0)
        #expect(!result.stdout.contains("Found"))
    }

    @Test func anUnreachableSimulatorIsAnIOErrorNotAnEmptyBus() async throws {
        let result = try await ChildProcess.run(Self.dfuUtil, ["-l"], environment: try StandInSupport.environment(socket: "/tmp/keyline-test-nobody-listens.sock"), timeout: .seconds(120))
        #expect(result.status != 0)
    }
}

/// The stand-in exports every libusb function its clients import, so the dynamic linker resolves
/// them all from it (an unresolved one would fall through to nothing and abort the client).
@Suite struct StandInExportsTests {
    static func symbols(_ arguments: [String]) async throws -> Set<String> {
        let result = try await ChildProcess.run("/usr/bin/nm", arguments)
        #expect(result.status == 0, "\(result.stderr)")
        return Set(result.stdout.split(separator: "\n").compactMap { line in
            line.split(separator: " ").last.map(String.init).flatMap { $0.hasPrefix("libusb_") ? $0 : nil }
        })
    }

    static var exported: Set<String> {
        get async throws {
            try await symbols(["-D", "--defined-only", try StandInSupport.libraryDirectory() + "/libusb-1.0.so.0"])
        }
    }

    @Test func exportsEverythingDFUUtilImports() async throws {
        let imported = try await Self.symbols(["-D", "--undefined-only", StandInServerTests.dfuUtil])
        // dfu-util 0.11 imports 22 libusb functions (dfu-protocol.md §3.1).
        #expect(imported.count >= 22)
        let missing = imported.subtracting(try await Self.exported)
        #expect(missing.isEmpty, "missing: \(missing.sorted())")
    }

    @Test func exportsEverythingKeylineImports() async throws {
        let bundleDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let keyline = bundleDirectory.appendingPathComponent("keyline").path
        let imported = try await Self.symbols(["-D", "--undefined-only", keyline])
        #expect(imported.contains("libusb_control_transfer"))
        let missing = imported.subtracting(try await Self.exported)
        #expect(missing.isEmpty, "missing: \(missing.sorted())")
    }

    @Test func hasTheRealSONAME() async throws {
        let result = try await ChildProcess.run("/usr/bin/objdump", ["-p", try StandInSupport.libraryDirectory() + "/libusb-1.0.so.0"])
        #expect(result.stdout.contains("SONAME               libusb-1.0.so.0"))
    }
}
