import DeviceBus
import ParticlePlatform
import ParticleDevice
@testable import Provisioning
import Simulator
import Testing

/// A run killed right after it told a device to leave DFU mode finds the device manifesting on
/// resume (found by the SIGKILL crash test): leaving again must count as done, not fail the device.
@Suite struct LeaveResumeTests {
    @Test(arguments: [Platform.photon, .boron])
    func aDeviceAlreadyLeavingCountsAsLeft(platform: Platform) async throws {
        // A long time scale keeps the device in its manifestation state while the test looks: its
        // 500 ms leave delay becomes 50 s (at 20, a loaded host once took longer than the 10 s).
        let fleet = try SimulatedFleet(timeScale: 100, seed: 3)
        let port = USBPortPath(bus: 1, ports: [1, 1])
        let device = try fleet.add(platform, at: port, mode: .dfu)
        let first = try await ParticleDFUDevice.open(try #require(device.transport), port: port)
        try await first.leave()
        #expect(device.currentMode == .dfu, "the device resets later, after its leave delay")

        // Asking again, as a resumed run does, is refused by the DFU state machine…
        let second = try await ParticleDFUDevice.open(try #require(device.transport), port: port)
        var refusal: ParticleDeviceError?
        do { try await second.leave() } catch { refusal = error }
        #expect(refusal != nil)
        // …and the workflow's leave counts it as left.
        let third = try await ParticleDFUDevice.open(try #require(device.transport), port: port)
        let failure = await DeviceWorkflow.leaveDFU(third)
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
        // Anything else is still a failure.
        #expect(!DeviceWorkflow.isAlreadyLeaving(ParticleDeviceError(step: .leave, reason: .transfer(.stall))))
    }
}
