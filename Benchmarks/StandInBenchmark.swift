import DeviceBus
import Foundation
import Simulator

/// keyline vs Debian's dfu-util on the same simulated device, the long way for both: each runs as
/// its own process with the libusb stand-in, talking to a zero-latency simulator served from this
/// process. Same 1 MiB download (erase + write) and upload on a Boron's external flash (alt 2).
/// Reported: wall time and CPU time (user + system) of the client process, and the simulator's
/// CPU time, totals of several alternating rounds, as keyline/dfu-util ratios from this one run.
enum StandInBenchmark {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    struct Measurement {
        var wall: Duration = .zero
        var clientCPU: Double = 0
        var simulatorCPU: Double = 0
        var transfers = 0

        static func += (total: inout Measurement, run: Measurement) {
            total.wall += run.wall
            total.clientCPU += run.clientCPU
            total.simulatorCPU += run.simulatorCPU
            total.transfers += run.transfers
        }
    }

    static func run() async throws {
        let benchDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let keyline = benchDirectory.appendingPathComponent("keyline").path
        guard FileManager.default.isExecutableFile(atPath: keyline) else {
            print("skipped: no keyline executable next to keyline-bench (`make bench` builds both)")
            return
        }
        let standIn = packageRoot.appendingPathComponent(".build/standin")
        guard FileManager.default.fileExists(atPath: standIn.appendingPathComponent("libusb-1.0.so.0").path) else {
            print("skipped: the libusb stand-in is not built (`make standin`)")
            return
        }

        let port = USBPortPath(bus: 1, ports: [1, 1])
        let fleet = try SimulatedFleet(timeScale: 0, seed: 1)
        let boron = try fleet.add(.boron, at: port, mode: .dfu)
        let server = StandInServer(socketPath: "/tmp/keyline-bench-\(getpid()).sock", fleet: fleet)
        try server.start()
        defer { server.stop() }
        var environment = ProcessInfo.processInfo.environment
        environment["LD_LIBRARY_PATH"] = standIn.path
        environment["KEYLINE_SIM_SOCKET"] = server.socketPath

        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        var generator = SplitMix64(seed: 2024)
        let size = 1 << 20
        let image = (0..<size).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let imageFile = scratch.appendingPathComponent("image.bin")
        try Data(image).write(to: imageFile)
        let address = "0x80000000"

        func check(_ what: String, _ file: URL? = nil) throws {
            let bytes = try file.map { try [UInt8](Data(contentsOf: $0)) } ?? boron.readMemory(alt: 2, address: 0x8000_0000, length: size)
            guard bytes == image else { throw BenchmarkFailure(description: "\(what): data differs from the image") }
        }
        func clear() throws { try boron.writeMemory(alt: 2, address: 0x8000_0000, bytes: [UInt8](repeating: 0, count: size)) }

        // Each operation runs `rounds` times, dfu-util and keyline alternating, and the totals are
        // compared: single runs of these short operations are at the mercy of a shared machine.
        let rounds = 5
        var dfuList = Measurement(), keylineList = Measurement()
        var dfuDownload = Measurement(), keylineDownload = Measurement()
        var dfuUpload = Measurement(), keylineUpload = Measurement()
        let dfuUtilOut = scratch.appendingPathComponent("dfu-util-up.bin"), keylineOut = scratch.appendingPathComponent("keyline-up.bin")
        for _ in 0..<rounds {
            // Listing (enumerate, open, read strings): mostly process start-up and probing.
            dfuList += try measure("/usr/bin/dfu-util", ["-l"], environment, counting: boron)
            keylineList += try measure(keyline, ["devices", "--json"], environment, counting: boron)

            try clear()
            dfuDownload += try measure("/usr/bin/dfu-util", ["-S", boron.deviceID, "-a", "2", "-s", address, "-D", imageFile.path],
                                       environment, counting: boron)
            try check("dfu-util download")
            try clear()
            keylineDownload += try measure(keyline, ["dfu", "write", "--serial", boron.deviceID, "--alt", "2", "--address", address,
                                                     "--no-verify", imageFile.path], environment, counting: boron)
            try check("keyline download")

            try? FileManager.default.removeItem(at: dfuUtilOut)   // dfu-util never overwrites
            dfuUpload += try measure("/usr/bin/dfu-util", ["-S", boron.deviceID, "-a", "2", "-s", "\(address):\(size)", "-U", dfuUtilOut.path],
                                     environment, counting: boron)
            try check("dfu-util upload", dfuUtilOut)
            keylineUpload += try measure(keyline, ["dfu", "read", "--serial", boron.deviceID, "--alt", "2", "--address", address,
                                                   "--length", "\(size)", "-o", keylineOut.path, "--force"], environment, counting: boron)
            try check("keyline upload", keylineOut)
        }

        func row(_ name: String, _ m: Measurement) -> String {
            name.padding(toLength: 22, withPad: " ", startingAt: 0)
                + String(format: "wall %7.3f s   client CPU %7.3f s   simulator CPU %7.3f s   %5d control transfers",
                         seconds(m.wall), m.clientCPU, m.simulatorCPU, m.transfers)
        }
        func ratio(_ name: String, _ k: Measurement, _ d: Measurement) -> String {
            name.padding(toLength: 22, withPad: " ", startingAt: 0)
                + String(format: "wall %5.2fx   client CPU %5.2fx   simulator CPU %5.2fx",
                         seconds(k.wall) / seconds(d.wall), k.clientCPU / d.clientCPU, k.simulatorCPU / d.simulatorCPU)
        }
        print("1 MiB on a simulated Boron, alt 2 (external flash), time scale 0, through the libusb stand-in; totals of \(rounds) rounds:")
        print(row("dfu-util -l", dfuList))
        print(row("keyline devices", keylineList))
        print(row("dfu-util download", dfuDownload))
        print(row("keyline  download", keylineDownload))
        print(row("dfu-util upload", dfuUpload))
        print(row("keyline  upload", keylineUpload))
        print("keyline / dfu-util (below 1 = keyline cheaper):")
        print(ratio("list", keylineList, dfuList))
        print(ratio("download", keylineDownload, dfuDownload))
        print(ratio("upload", keylineUpload, dfuUpload))
    }

    struct BenchmarkFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs a client to completion; its CPU comes from RUSAGE_CHILDREN, the simulator's (this
    /// process's server threads) from RUSAGE_SELF.
    static func measure(_ executable: String, _ arguments: [String], _ environment: [String: String],
                        counting device: SimulatedDevice) throws -> Measurement {
        let transfersBefore = device.statistics.controlTransfers
        let childBefore = cpuSeconds(RUSAGE_CHILDREN), selfBefore = cpuSeconds(RUSAGE_SELF)
        let start = ContinuousClock.now
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-bench-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errors) }
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        process.waitUntilExit()   // the benchmark's main flow; nothing else runs meanwhile
        let wall = ContinuousClock.now - start
        guard process.terminationStatus == 0 else {
            let text = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            throw BenchmarkFailure(description: "\(URL(fileURLWithPath: executable).lastPathComponent) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(text)")
        }
        return Measurement(wall: wall, clientCPU: cpuSeconds(RUSAGE_CHILDREN) - childBefore, simulatorCPU: cpuSeconds(RUSAGE_SELF) - selfBefore,
                           transfers: device.statistics.controlTransfers - transfersBefore)
    }

    static func cpuSeconds(_ who: __rusage_who) -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(who.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
