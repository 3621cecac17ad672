import DFU
import DeviceBus
import Foundation
import Simulator
import Testing
import TestSupport

/// One owner per device across both paths: a handle opened in-process on the simulated fleet
/// and keyline's libusb code through the stand-in obey one claim rule.
@Suite struct USBClaimTests {
    @Test func aDeviceClaimedInProcessIsBusyThroughLibUSBUntilClosed() async throws {
        let port = USBPortPath(bus: 1, ports: [7])
        let served = try USBPathTests.Served(seed: 31) { try $0.add(.photon, at: port, mode: .dfu) }
        defer { served.stop() }
        let photon = try #require(served.fleet.device(at: port))
        let attachment = try #require(served.fleet.attachedDevices().first)
        let held = try served.fleet.openHandle(attachment.busDevice)
        let output = served.scratch.appendingPathComponent("dct.bin")
        let read = ["dfu", "read", "--serial", photon.deviceID, "--alt", "1", "--address", "0", "--length", "16", "-o", output.path]

        // libusb_claim_interface answers LIBUSB_ERROR_BUSY through the stand-in.
        let refused = try await served.keyline(read)
        #expect(refused.status == 69, "\(refused.stdout)\n\(refused.stderr)")
        #expect(refused.stderr.contains("in use by another program"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output.path))

        // Closed: the same command claims it.
        held.closeBlocking()
        let allowed = try await served.keyline(read)
        #expect(allowed.status == 0, "\(allowed.stdout)\n\(allowed.stderr)")

        // And the other way round: while keyline's handle is gone, an in-process open succeeds.
        let again = try served.fleet.openHandle(attachment.busDevice)
        again.closeBlocking()
    }

    @Test func dfuEnterOnADeviceAlreadyInDFUModeSucceeds() async throws {
        let port = USBPortPath(bus: 2, ports: [4])
        let served = try USBPathTests.Served(seed: 32) { try $0.add(.boron, at: port, mode: .dfu) }
        defer { served.stop() }
        let boron = try #require(served.fleet.device(at: port))
        let enumerations = boron.statistics.enumerations

        let json = try await served.keyline(["dfu", "enter", "--serial", boron.deviceID, "--json"])
        #expect(json.status == 0, "\(json.stdout)\n\(json.stderr)")
        let reply = try JSONDecoder().decode([String: String].self, from: Data(json.stdout.utf8))
        #expect(reply["deviceID"] == boron.deviceID)
        #expect(reply["mode"] == "dfu")
        #expect(reply["alreadyInDFU"] == "true")
        #expect(reply["port"] == "2-4")

        let human = try await served.keyline(["dfu", "enter", "--port", "2-4"])
        #expect(human.status == 0, "\(human.stdout)\n\(human.stderr)")
        #expect(human.stdout.contains("already in DFU mode"), "\(human.stdout)")
        // Left as it was: no request 50, no re-enumeration.
        #expect(boron.statistics.enumerations == enumerations)
        #expect(boron.currentMode == .dfu)
    }
}
