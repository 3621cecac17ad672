import DFU
import DeviceBus
import ParticlePlatform
import Foundation
import Simulator
import Testing

/// Counts transfers in flight across devices: a structural check that devices progress together.
final class InFlightCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var current = 0
    private(set) var maximum = 0
    func enter() { lock.withLock { current += 1; maximum = max(maximum, current) } }
    func leave() { lock.withLock { current -= 1 } }
    var peak: Int { lock.withLock { maximum } }
}

struct CountingTransport: ControlTransport {
    let inner: any ControlTransport
    let counter: InFlightCounter
    func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) async throws(USBTransferError) -> [UInt8] {
        counter.enter()
        defer { counter.leave() }
        return try await inner.control(setup, data: data, timeout: timeout)
    }
    func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) async throws(USBTransferError) {
        try await inner.selectAlternateSetting(interface: interface, alternateSetting: alternateSetting)
    }
}

@Suite struct ConcurrencyTests {
    /// 32 devices with the realistic timing model (scaled down), driven at once: every one finishes
    /// with the right data, and their transfers overlap — flash waits are sleeps, so they do not
    /// occupy the (2-thread) cooperative pool. No timing is asserted.
    @Test func thirtyTwoDevicesProgressTogether() async throws {
        let fleet = try SimulatedFleet(timeScale: 0.02, seed: 32)
        let platforms: [Platform] = [.photon, .electron, .argon, .boron, .bsom, .p2, .p1]
        for i in 0..<32 { try fleet.add(platforms[i % platforms.count], at: USBPortPath(bus: 1, ports: [UInt8(1 + i / 8), UInt8(1 + i % 8)])) }
        let counter = InFlightCounter()
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for attachment in fleet.attachedDevices() {
                group.addTask {
                    let dfu = try await DfuSeDevice.open(CountingTransport(inner: attachment.transport, counter: counter))
                    let segment = try #require(try dfu.layout(alt: 0).segments.first { $0.attributes == [.readable, .erasable, .writable] })
                    let data = pattern(16 * 1024, seed: attachment.address)
                    try await dfu.write(alt: 0, address: segment.start, bytes: data)
                    return try attachment.device.readMemory(alt: 0, address: segment.start, length: data.count) == data
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.count == 32 && results.allSatisfy { $0 })
        // Structural overlap only: how many overlap depends on the machine's load (the figure is
        // `keyline-bench dfu`'s to measure).
        #expect(counter.peak > 1)
    }
}
