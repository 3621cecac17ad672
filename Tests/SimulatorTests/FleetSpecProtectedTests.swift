import DeviceBus
import ParticlePlatform
import Testing
import TestSupport
@testable import Simulator

/// `keyline-sim serve --protected` (issue 21, "Smaller"): Protected Device mode exists on Gen 3
/// and later only, so a Gen 2 device is never simulated as protected.
@Suite struct FleetSpecProtectedTests {
    @Test func aPhotonIsNeverProtected() throws {
        #expect {
            _ = try FleetSpec.plan(spec: "photon:2", mode: "dfu", timeScale: 0, faults: nil, protected: "all")
        } throws: { error in
            "\(error)".contains("photon") && "\(error)".contains("Gen 3")
        }
        #expect(throws: (any Error).self) {
            _ = try FleetSpec.plan(spec: "boron:1,photon:1", mode: "dfu", timeScale: 0, faults: nil, protected: "1-2.1")
        }
        // Gen 3 devices may be, by port or all, beside unprotected Photons.
        let plan = try FleetSpec.plan(spec: "boron:1,photon:1", mode: "dfu", timeScale: 0, faults: nil, protected: "1-1.1")
        #expect(plan.devices.map(\.protected) == [true, false])
        #expect(try FleetSpec.plan(spec: "boron:2", mode: "dfu", timeScale: 0, faults: nil, protected: "all")
                .devices.allSatisfy(\.protected))
    }
}

/// `make bench`'s parallel efficiency (issue 21, "Smaller"): the device-bound limit ends at the
/// answer to the leave request, where a batch's wall ends, not after the boot that follows.
@Suite struct DeviceBoundLimitTests {
    @Test func theLimitEndsAtTheLeaveRequest() async throws {
        let fleet = try SimulatedFleet(timeScale: 0.001, seed: 5)
        let device = try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [1, 1]), mode: .dfu)
        try await openDFU(device).leave()
        // Back in normal mode: the detach, the boot and any reset after generating a key are counted.
        try await waitUntil(deadline: .seconds(30), poll: .milliseconds(5), "the device back in normal mode") {
            device.isAttached && device.currentMode == .normal
        }
        let usb = try #require(SimulatedHardware.forPlatform(.photon)).usb
        let statistics = device.statistics
        let after = usb.leaveDelay + usb.boot * (1 + statistics.resetsAfterKeyGeneration)
        #expect(statistics.modelledTime > after)
        #expect(statistics.modelledTimeAfterLeave == after)
        #expect(fleet.deviceBoundLimit?.time == statistics.modelledTime - after)
    }
}
