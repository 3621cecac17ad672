import CLibUSB
import DeviceBus
import Foundation
import Simulator
import Testing
import TestSupport
@testable import USB

/// `USBContext.enumerate` hands out `libusb_device` pointers after freeing the device list: each
/// must hold a reference of its own. Through the libusb stand-in, which aborts on any use of a
/// freed device, in a child process (this test binary again, loaded with the stand-in).
@Suite struct USBEnumerationTests {
    static let childVariable = "KEYLINE_TEST_ENUMERATION_CHILD"

    @Test func enumeratedDevicesStayValidAfterTheListIsFreed() async throws {
        let served = try USBPathTests.Served(seed: 41) { fleet in
            for index in 1...2 { try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [3, UInt8(index)]), mode: .dfu) }
        }
        defer { served.stop() }
        try await waitUntil("two devices on the bus") { served.fleet.attachedDevices().count >= 2 }
        let testBinary = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var environment = served.environment
        environment[Self.childVariable] = "1"
        let child = try await ChildProcess.run(
            testBinary, ["--testing-library", "swift-testing", "--filter", "USBEnumerationTests/inTheChild"],
            environment: environment, timeout: .seconds(120))
        #expect(!child.terminatedBySignal && child.status == 0, "\(child.stdout.suffix(3000))\n\(child.stderr.suffix(3000))")
        // Both paths (with and without reading strings) listed both devices in the child.
        #expect(child.stdout.contains("enumerated: 2 2"), "\(child.stdout.suffix(3000))")
    }

    /// Runs only in the child the test above starts (the stand-in is loaded, KEYLINE_SIM_SOCKET set).
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childVariable] == "1"))
    func inTheChild() async throws {
        let context = await USBContext.make()
        let counts = try await context.worker.perform { () throws(USBError) -> [Int] in
            guard let handle = context.initializedHandle() else { return [] }
            return try [true, false].map { (readStrings: Bool) throws(USBError) -> Int in
                let listed = try USBContext.enumerate(handle, readStrings: readStrings)
                defer { listed.forEach { libusb_unref_device($0.device) } }
                // The list is freed: a device without a reference of its own aborts the stand-in here.
                return listed.filter { libusb_get_device_address($0.device) == $0.info.address
                    && libusb_get_bus_number($0.device) == $0.info.portPath.bus }.count
            }
        }
        print("enumerated: \(counts.map(String.init).joined(separator: " "))")
        #expect(counts == [2, 2])
    }
}
