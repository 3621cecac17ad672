import DeviceBus
import Foundation
@testable import Simulator
import Testing

/// The shared full-speed bus (issue 13): one 12 Mbit/s TT per single-TT hub, one per port on a
/// multi-TT hub. Assertions use modelled time (device statistics), with generous bounds.
@Suite struct BusModelTests {
    /// The scheduler itself, without any sleeping: same-time reservations queue on one TT; a
    /// reservation far in the future leaves the gap before it free.
    @Test func translatorQueuesAndFillsGaps() {
        let tt = TransactionTranslator()
        let t0 = ContinuousClock.now
        let length = Duration.milliseconds(3)
        let starts = (0..<8).map { _ in tt.reserve(earliest: t0, length: length, now: t0) }
        #expect(starts == (0..<8).map { t0 + length * $0 })
        let later = tt.reserve(earliest: t0 + .seconds(1), length: length, now: t0)
        #expect(later == t0 + .seconds(1))
        #expect(tt.reserve(earliest: t0, length: length, now: t0) == t0 + length * 8)
    }

    @Test func wireTimeIsFullSpeed() {
        // 4096 data bytes in 64 packets + 45 + 63 × 13 overhead bytes = 4960 bytes at 12 Mbit/s.
        #expect(USBTiming.fullSpeed.wireTime(bytes: 4096) == .nanoseconds(4960 * 8 * 1000 / 12))
    }

    /// Every device asks for one 4096-byte UPLOAD at the same moment. Single-TT: the transfers queue
    /// on the one TT, so the last device finishes after N times the wire time of one and the waits
    /// add up to (0 + 1 + … + N-1) wire times; multi-TT: nobody waits. The slots are reserved
    /// directly, one device after another within microseconds: the model's queueing, free of how
    /// a loaded host schedules tasks (transfers made from tasks started tens of milliseconds apart
    /// on a loaded 2-core CI host left gaps the others took, and the test failed there). That
    /// transfers sleep until their slot is covered by the other tests of this suite.
    @Test(arguments: [HubKind.single, .multi])
    func devicesShareTheBusBehindASingleTTHub(kind: HubKind) async throws {
        let hub = USBPortPath(bus: 1, ports: [1])
        let fleet = try SimulatedFleet(timeScale: 100, seed: 7, hubs: [hub: kind])
        let count = 4
        let devices = try (1...count).map { try fleet.add(.photon, at: port($0), mode: .dfu) }
        #expect(fleet.hubKind(at: hub) == kind)
        let upload = ControlSetup(requestType: 0xA1, request: 2, value: 2, index: 0, length: 4096)
        for device in devices {
            let session = try #require(device.currentSession())
            _ = try device.reserve(session: session, setup: upload)
        }
        let solo = USBTiming.fullSpeed.transferTime(bytes: 4096)
        let wire = USBTiming.fullSpeed.wireTime(bytes: 4096)
        let slowest = try #require(devices.map(\.statistics.modelledTime).max())
        let waited = devices.map(\.statistics.busWait).reduce(.zero, +)
        switch kind {
        case .single:
            // Exact but for the microseconds between the reservations (divided by the time scale).
            #expect(slowest > wire * Double(count) * 0.99, "slowest \(slowest), one alone \(solo)")
            #expect(waited > wire * Double(count * (count - 1) / 2) * 0.99, "waited \(waited)")
            #expect(waited <= wire * Double(count * (count - 1) / 2), "waited \(waited)")
        case .multi:
            #expect(slowest < solo * 1.01, "slowest \(slowest), one alone \(solo)")
            #expect(waited == .zero)
        }
    }

    /// A root port (no hub) and ports of different hubs never share a TT.
    @Test func separateHubsDoNotShare() async throws {
        let fleet = try SimulatedFleet(timeScale: 1, seed: 8, defaultHub: .single)
        let a = try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [1, 1]), mode: .dfu)
        let b = try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [2, 1]), mode: .dfu)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for device in [a, b] {
                let transport = try #require(device.transport)
                group.addTask {
                    for block in 2..<10 {
                        let setup = ControlSetup(requestType: 0xA1, request: 2, value: UInt16(block), index: 0, length: 4096)
                        _ = try await transport.control(setup, data: [], timeout: .seconds(5))
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(a.statistics.busWait == .zero && b.statistics.busWait == .zero)
    }
}
