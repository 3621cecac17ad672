import DFU
import Foundation
import ParticleDevice
import Simulator
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

    /// Every device reads 16 KiB (4 × 4096-byte UPLOADs) at once. Single-TT: N devices take about
    /// N times the wire time of one; multi-TT: about the same as one. At time scale 100 a transfer's
    /// wire slot is a third of a second, and the tasks wait for each other at a start line before
    /// their first transfer: on a loaded 2-core host tasks of one group once started far enough
    /// apart to share the bus less than the bounds below ask.
    @Test(arguments: [HubKind.single, .multi])
    func devicesShareTheBusBehindASingleTTHub(kind: HubKind) async throws {
        let hub = USBPortPath(bus: 1, ports: [1])
        let fleet = try SimulatedFleet(timeScale: 100, seed: 7, hubs: [hub: kind])
        let count = 4
        let devices = try (1...count).map { try fleet.add(.photon, at: port($0), mode: .dfu) }
        #expect(fleet.hubKind(at: hub) == kind)
        try await withThrowingTaskGroup(of: Void.self) { group in
            let start = StartLine(runners: count)
            for device in devices {
                let transport = try #require(device.transport)
                group.addTask {
                    await start.arrive()
                    for block in 2..<6 {
                        let setup = ControlSetup(requestType: 0xA1, request: 2, value: UInt16(block), index: 0, length: 4096)
                        _ = try await transport.control(setup, data: [], timeout: .seconds(30))
                    }
                }
            }
            try await group.waitForAll()
        }
        let solo = USBTiming.fullSpeed.transferTime(bytes: 4096) * 4
        let wire = USBTiming.fullSpeed.wireTime(bytes: 4096) * 4
        let slowest = try #require(devices.map(\.statistics.modelledTime).max())
        let waited = devices.map(\.statistics.busWait).reduce(.zero, +)
        switch kind {
        case .single:
            // Ideal: the last device finishes after count × wire; at least half that counts as shared.
            #expect(slowest > wire * Double(count) * 0.6, "slowest \(slowest), one alone \(solo)")
            #expect(waited > wire * Double(count - 1), "waited \(waited)")
        case .multi:
            #expect(slowest < solo * 1.5, "slowest \(slowest), one alone \(solo)")
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

/// Holds tasks until `runners` of them have arrived, then lets them all go at once.
private actor StartLine {
    private let runners: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(runners: Int) { self.runners = runners }

    func arrive() async {
        if waiting.count + 1 >= runners {
            for runner in waiting { runner.resume() }
            waiting = []
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }
}
