import DFU
import DeviceKeys
import Foundation
import ParticleDevice
import Simulator
import Testing

/// The platforms the simulator must model (issue 3), each with its memory facts.
let simulatedPlatforms: [Platform] = [.photon, .p1, .electron, .argon, .boron, .bsom, .p2]

func port(_ n: Int) -> USBPortPath { USBPortPath(bus: 1, ports: [UInt8(n)]) }

func openDFU(_ device: SimulatedDevice) async throws -> DfuSeDevice {
    let transport = try #require(device.transport)
    return try await DfuSeDevice.open(transport)
}

@Suite struct SmokeTests {
    @Test(arguments: simulatedPlatforms)
    func readWriteLeave(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, mode: .dfu, timeScale: 0, seed: 7)
        let dfu = try await openDFU(device)
        #expect(dfu.serialNumber == device.deviceID)
        #expect(dfu.transferSize == 4096)
        let layout = try dfu.layout(alt: 0)
        // A writeable, erasable place in alt 0: the first 'g' segment.
        let segment = try #require(layout.segments.first { $0.attributes.contains([.erasable, .writable, .readable]) })
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        try await dfu.write(alt: 0, address: segment.start, bytes: data)
        let back = try await dfu.read(alt: 0, address: segment.start, length: data.count)
        #expect(back == data)
        #expect(try device.readMemory(alt: 0, address: segment.start, length: data.count) == data)
        try await dfu.leave()
    }
}
