// DFU client + simulator figures (issue 3):
// 1. Concurrency: one simulated device vs 32 driven at once, with the realistic timing model
//    (scaled); the ratio shows whether devices really progress in parallel (ideal ≈ 1.0).
// 2. Host CPU per MiB written and read through the in-process transport at zero latency.
import DFU
import DeviceBus
import ParticlePlatform
import Foundation
import Simulator

enum DFUBenchmarks {
    static let timeScale = 0.1
    static let imageSize = 64 * 1024

    static func run() async throws {
        for platform in [Platform.boron, .photon] {
            try await concurrency(platform: platform, devices: 32)
        }
        try await cpuPerMiB(platform: .p2, mebibytes: 4)
    }

    /// Opens, writes a 64 KB image (erase + program + verify) and reads the key slot on each device.
    static func provisionLike(_ attachment: SimulatedAttachment) async throws {
        let dfu = try await DfuSeDevice.open(attachment.transport)
        let layout = try dfu.layout(alt: 0)
        guard let segment = layout.segments.first(where: { $0.attributes == [.readable, .erasable, .writable] }) else { return }
        let image = (0..<imageSize).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        try await dfu.write(alt: 0, address: segment.start, bytes: image, verify: true)
        let slot = attachment.device.platform.privateKeySlot
        _ = try await dfu.read(alt: 1, address: UInt32(slot.offset), length: slot.size)
    }

    static func timeFleet(platform: Platform, devices: Int) async throws -> (seconds: Double, cpu: Double) {
        let fleet = try SimulatedFleet(timeScale: timeScale, seed: UInt64(devices))
        for i in 0..<devices {
            try fleet.add(platform, at: USBPortPath(bus: 1, ports: [UInt8(1 + i / 8), UInt8(1 + i % 8)]))
        }
        let attachments = fleet.attachedDevices()
        let cpuStart = processCPUSeconds()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for attachment in attachments { group.addTask { try await provisionLike(attachment) } }
            try await group.waitForAll()
        }
        return (seconds(ContinuousClock.now - start), processCPUSeconds() - cpuStart)
    }

    static func concurrency(platform: Platform, devices: Int) async throws {
        let one = try await timeFleet(platform: platform, devices: 1)
        let many = try await timeFleet(platform: platform, devices: devices)
        print(String(format: "dfu-concurrency %@: 64 KB write+verify+key read, time scale %.2f: 1 device %.3f s, %d devices %.3f s, ratio %.2f (ideal 1.00); CPU %.3f s vs %.3f s",
                     platform.name, timeScale, one.seconds, devices, many.seconds, many.seconds / one.seconds, one.cpu, many.cpu))
    }

    static func cpuPerMiB(platform: Platform, mebibytes: Int) async throws {
        let device = try SimulatedDevice(platform: platform, mode: .dfu, timeScale: 0, seed: 1)
        guard let transport = device.transport else { return }
        let dfu = try await DfuSeDevice.open(transport)
        let start = try dfu.layout(alt: 0).segments[0].start
        let bytes = (0..<(mebibytes << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let cpu0 = processCPUSeconds()
        let t0 = ContinuousClock.now
        try await dfu.write(alt: 0, address: start, bytes: bytes, verify: false)
        let cpu1 = processCPUSeconds()
        let t1 = ContinuousClock.now
        let back = try await dfu.read(alt: 0, address: start, length: bytes.count)
        let cpu2 = processCPUSeconds()
        let t2 = ContinuousClock.now
        guard back == bytes else { print("dfu-cpu: read-back mismatch"); return }
        let mib = Double(mebibytes)
        print(String(format: "dfu-cpu %@ (zero latency, in-process): write %.1f ms CPU/MiB (%.1f MiB/s wall), read %.1f ms CPU/MiB (%.1f MiB/s wall); %d control transfers",
                     platform.name, (cpu1 - cpu0) * 1000 / mib, mib / seconds(t1 - t0), (cpu2 - cpu1) * 1000 / mib, mib / seconds(t2 - t1),
                     device.statistics.controlTransfers))
    }

    static func processCPUSeconds() -> Double {
        var usage = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
