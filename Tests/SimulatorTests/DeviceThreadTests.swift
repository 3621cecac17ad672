import DFU
import DeviceBus
import Foundation
import Simulator
import Testing

/// Counts how a DFU client reaches the device: whole operations on the device thread
/// (`onDeviceThread`) versus single async transfers (`control`), each a hand-off of its own.
final class HandOffCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var operations = 0
    private var singles = 0
    func operation() { lock.withLock { operations += 1 } }
    func single() { lock.withLock { singles += 1 } }
    var counts: (operations: Int, singles: Int) { lock.withLock { (operations, singles) } }
}

struct CountingThreadTransport: DeviceThreadTransport {
    let inner: SimulatedTransport
    let counter: HandOffCounter

    func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) async throws(USBTransferError) -> [UInt8] {
        counter.single()
        return try await inner.control(setup, data: data, timeout: timeout)
    }

    func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) async throws(USBTransferError) {
        counter.single()
        try await inner.selectAlternateSetting(interface: interface, alternateSetting: alternateSetting)
    }

    func onDeviceThread<T: Sendable, E: Error>(_ body: @escaping @Sendable (any BlockingControl) throws(E) -> T) async throws(E) -> T {
        counter.operation()
        return try await inner.onDeviceThread(body)
    }
}

/// Where progress handlers ran: inside a Swift task (the cooperative pool) or not.
final class ProgressCalls: @unchecked Sendable {
    private let lock = NSLock()
    private var inTask = 0
    private var calls = 0
    func record() {
        let insideTask = withUnsafeCurrentTask { $0 != nil }
        lock.withLock { calls += 1; if insideTask { inTask += 1 } }
    }
    var seen: (calls: Int, inTask: Int) { lock.withLock { (calls, inTask) } }
}

@Suite struct DeviceThreadTests {
    /// Issue 9, the runner: "a device's whole step runs on its own thread with one hand-off per
    /// step, not two per control transfer".
    @Test func eachOperationIsOneHandOffToTheDeviceThread() async throws {
        let device = try SimulatedDevice(platform: .boron, mode: .dfu, timeScale: 0, seed: 9)
        let counter = HandOffCounter()
        let transport = CountingThreadTransport(inner: try #require(device.transport), counter: counter)
        let dfu = try await DfuSeDevice.open(transport)
        let segment = try firmwareSegment(dfu)
        let data = pattern(64 * 1024, seed: 9)
        let progress = ProgressCalls()
        let before = device.statistics.controlTransfers
        try await dfu.write(alt: 0, address: segment.start, bytes: data, verify: true) { _ in progress.record() }
        let back = try await dfu.read(alt: 0, address: segment.start, length: data.count)
        #expect(back == data)
        #expect(device.statistics.controlTransfers - before > 100)
        let counts = counter.counts
        #expect(counts.operations == 3, "open, write, read")
        #expect(counts.singles == 0)
        // Progress is reported from the device's thread, outside any task.
        let seen = progress.seen
        #expect(seen.calls > 0)
        #expect(seen.inTask == 0)
    }

    /// A cancelled operation stops at the next block instead of running to the end.
    @Test func aCancelledWriteStopsAtTheNextBlock() async throws {
        let device = try SimulatedDevice(platform: .boron, mode: .dfu, timeScale: 1, seed: 10)
        let transport = try #require(device.transport)
        let dfu = try await DfuSeDevice.open(transport)
        let segment = try firmwareSegment(dfu)
        // 128 KiB with the realistic timing model takes seconds (4 KiB sectors at 85 ms to erase
        // alone); the cancel comes after 100 ms.
        let length = min(128 * 1024, Int(segment.sectorSize) * segment.sectorCount)
        #expect(length >= 64 * 1024)
        let data = pattern(length, seed: 10)
        let start = ContinuousClock.now
        let task = Task { () async throws -> Bool in
            try await dfu.write(alt: 0, address: segment.start, bytes: data, verify: false)
            return true
        }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        let result = await task.result
        let elapsed = ContinuousClock.now - start
        guard case .failure(let failure) = result, let error = failure as? DFUError, case .transfer(.cancelled, _) = error.reason else {
            Issue.record("expected a cancelled write, got \(result)")
            return
        }
        // Stopped early, not after the whole image: less was programmed than was sent. (Not a
        // timed assertion: a loaded 2-core machine makes any bound flaky.)
        #expect(device.statistics.bytesProgrammed < length, "programmed \(device.statistics.bytesProgrammed) of \(length) bytes in \(elapsed)")
    }
}
