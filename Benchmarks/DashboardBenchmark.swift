import Foundation
import HeadlessBrowser
import Registry
import TestSupport

/// `keyline dashboard` under a floor's load (issue 23): 4 stations × 64 devices written straight
/// through Registry's API (each device detected, then four state writes: dfu, flashed, server_key,
/// key_ready), while 20 viewers watch the floor (one headless Chromium page plus 19
/// plain SSE clients). Figures: the latency from the start of a
/// state write to its arrival in each page (the page's own EventSource: the `change` event naming
/// the device, and the `floor` update showing its new step; arrival read in the page with
/// Date.now(), the host's clock), p50/p95 over every write × page; and the dashboard's resident
/// memory (VmRSS idle with the pages open, VmHWM peak). Needs `keyline` beside this
/// binary, Debian's chromium, and the local cluster's PG* settings (make bench).
enum DashboardBenchmark {
    static let stations = 4
    static let devicesPerStation = 64
    static let pages = 20
    static let states = ["dfu", "flashed", "server_key", "key_ready"]
    /// The step the floor shows a device on after each state (Dashboard's FloorStep.current).
    static let floorStep = ["dfu": "flash", "flashed": "server_key", "server_key": "key", "key_ready": "escrow"]
    /// Between two writes of one station: 4 stations give 40 writes a second, a busy floor.
    static let writeInterval = Duration.milliseconds(100)

    static func run() async throws {
        if let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty {
            print("  skipped: needs the local cluster (PG* settings, make db-up), not DATABASE_URL")
            return
        }
        let keyline = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("keyline").path
        let base = ConnectionSettings.fromEnvironment()
        let name = "kl_bench_dash_" + String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        let viewer = name + "_view"
        let admin = try await PostgresConnection.connect(base)
        try await admin.execute("CREATE DATABASE \(name)")
        try await admin.execute("CREATE ROLE \(viewer) LOGIN")
        let scratch = try ScratchDirectory(label: "dashboard-bench")
        do {
            try await measure(settings: base.with(database: name), database: name, viewer: viewer, keyline: keyline, scratch: scratch)
        } catch {
            print("  failed: \(error)")
        }
        scratch.remove()
        _ = try? await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        _ = try? await admin.execute("DROP ROLE IF EXISTS \(viewer)")
    }

    /// What each page keeps of an event: the device a job_devices change names, and the tiles
    /// whose step or state changed since the page's previous floor update.
    static let summarize = """
        (() => {
          const last = {};
          return (type, data) => {
            if (type === 'change') {
              try { const c = JSON.parse(data); return c.table === 'job_devices' && c.device ? 'c ' + c.device : null; } catch (e) { return null; }
            }
            if (type !== 'floor') { return null; }
            const out = [];
            for (const tag of data.match(/<div class="tile"[^>]*>/g) || []) {
              const device = /data-device="([^"]*)"/.exec(tag);
              if (!device) { continue; }
              const step = /data-step="([^"]*)"/.exec(tag);
              const value = step ? step[1] : '';
              if (last[device[1]] !== value) { last[device[1]] = value; out.push(device[1] + '=' + value); }
            }
            return out.length ? 'f ' + out.join(' ') : null;
          };
        })()
        """

    private static func measure(settings: ConnectionSettings, database: String, viewer: String, keyline: String,
                                scratch: ScratchDirectory) async throws {
        let setupConnection = try await PostgresConnection.connect(settings)
        try await MigrationRunner(connection: setupConnection).migrate()
        let setup = RegistryDatabase(client: setupConnection)
        _ = try await setup.createProduct(id: "bench", name: "Benchmark product", platform: "photon")
        var environment = ["PGDATABASE": database]
        try await ChildProcess.run(keyline, ["db", "grant", viewer, "--role", "auditor"], environment: environment,
                                   timeout: .seconds(120)).requireSuccess()

        // The floor: 4 stations, each a running job with 64 devices on 64 ports, all detected.
        var jobs: [(station: String, job: Int64, devices: [String])] = []
        for station in 1...stations {
            let name = "bench-\(station)"
            let job = try await setup.createJob(productID: "bench", station: name, pipeline: "bench")
            var devices: [String] = []
            for index in 0..<devicesPerStation {
                let device = String(format: "e00fce68%04x%012x", station, index)
                _ = try await setup.startJobDevice(jobID: job.id, deviceID: device, platform: "photon", station: name,
                                                   portPath: "\(station)-\(index / 16 + 1).\(index % 16 + 1)")
                devices.append(device)
            }
            jobs.append((name, job.id, devices))
        }

        // The dashboard, as the auditor login.
        environment["PGUSER"] = viewer
        let port = try freeLoopbackPort()
        let log = scratch.file("dashboard.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let dashboard = Process()
        dashboard.executableURL = URL(fileURLWithPath: keyline)
        dashboard.arguments = ["dashboard", "--listen", "127.0.0.1:\(port)"]
        dashboard.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        dashboard.standardOutput = try FileHandle(forWritingTo: log)
        dashboard.standardError = dashboard.standardOutput
        try dashboard.run()
        defer { if dashboard.isRunning { kill(dashboard.processIdentifier, SIGKILL) } }
        try await waitUntil(deadline: .seconds(60), "keyline dashboard to listen") {
            guard dashboard.isRunning else { throw BrowserFailure("keyline dashboard exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")") }
            return ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("listening on")
        }
        let idleRSS = memory(of: dashboard.processIdentifier, "VmRSS")

        try await HeadlessChromium.with(in: scratch.url) { browser in
            // One real Chromium page (its own EventSource, arrival read in the page) plus plain SSE
            // clients for the other viewers: 20 Chromium tabs on a loaded 2-core host left
            // Page.navigate unanswered for over a minute, so the rest of the load is 19 streams.
            let page = try await browser.open("http://127.0.0.1:\(port)/", initScript: EventSourceRecorder.script(summarize: summarize),
                                              loadDeadline: .seconds(180))
            try await page.waitFor("document.getElementById('connection').dataset.state === 'live'", deadline: .seconds(180))
            var listeners: [EventStreamListener] = []
            defer { listeners.forEach { $0.stop() } }
            for _ in 1..<pages { listeners.append(EventStreamListener(port: port)) }
            try await waitUntil(deadline: .seconds(120), "\(pages - 1) SSE clients to connect") {
                if let error = listeners.compactMap(\.error).first { throw BrowserFailure("SSE client: \(error)") }
                return listeners.allSatisfy(\.isConnected)
            }
            let openRSS = memory(of: dashboard.processIdentifier, "VmRSS")

            // The writes: each station walks its devices one state at a time, a write every 100 ms.
            let written = try await withThrowingTaskGroup(of: [(device: String, state: String, at: Double)].self) { group in
                for station in jobs {
                    group.addTask {
                        let registry = RegistryDatabase(client: try await PostgresConnection.connect(settings))
                        var writes: [(device: String, state: String, at: Double)] = []
                        var previous = "detected"
                        for state in states {
                            for device in station.devices {
                                let at = Date().timeIntervalSince1970 * 1000
                                try await registry.advanceJobDevice(jobID: station.job, deviceID: device, from: previous, to: state,
                                                                    keyFingerprint: state == "key_ready" ? fingerprint(device) : nil)
                                writes.append((device, state, at))
                                try await Task.sleep(for: writeInterval)
                            }
                            previous = state
                        }
                        return writes
                    }
                }
                var all: [(device: String, state: String, at: Double)] = []
                for try await writes in group { all += writes }
                return all
            }
            // Every page shows the last state of every device.
            let lastDevice = jobs.map { $0.devices.last! }
            try await page.waitFor(lastDevice.map { "document.querySelector('.tile[data-device=\"\($0)\"][data-step=\"escrow\"]')" }
                .joined(separator: " && "), deadline: .seconds(300), "the page to show the last writes")
            try await waitUntil(deadline: .seconds(120), "the SSE clients to see the last writes") {
                listeners.allSatisfy { listener in
                    let floors = listener.arrivals.floors
                    return lastDevice.allSatisfy { floors[$0]?.last?.step == "escrow" }
                }
            }
            let peakRSS = memory(of: dashboard.processIdentifier, "VmHWM")

            var changes: [String: [Double]] = [:]
            var floors: [String: [(step: String, at: Double)]] = [:]
            for entry in try await page.evaluate("window.__eventSourceLog").array ?? [] {
                guard let value = entry["value"]?.string, let at = entry["at"]?.number else { continue }
                let words = value.split(separator: " ")
                if words.first == "c", words.count == 2 {
                    changes[String(words[1]), default: []].append(at)
                } else if words.first == "f" {
                    for item in words.dropFirst() {
                        let parts = item.split(separator: "=", maxSplits: 1)
                        if parts.count == 2 { floors[String(parts[0]), default: []].append((String(parts[1]), at)) }
                    }
                }
            }
            let inPage = latencies(written, changes: changes, floors: floors)
            var streams = Latencies()
            for listener in listeners {
                let arrivals = listener.arrivals
                streams.add(latencies(written, changes: arrivals.changes, floors: arrivals.floors))
            }
            #if DEBUG
            print("  DEBUG build (swift build --product keyline-bench; debug keyline): figures are not release figures")
            #else
            print("  release build (make bench): keyline dashboard beside this binary")
            #endif
            print("  \(stations) stations × \(devicesPerStation) devices, \(written.count) state writes (40/s); viewers: 1 headless Chromium page"
                  + " + \(pages - 1) plain SSE clients on /events (not \(pages) Chromium tabs)")
            print("  in the Chromium page (Date.now() at arrival − host time at write start):")
            print("    write → change event:      p50 \(percentile(inPage.change, 50)) ms, p95 \(percentile(inPage.change, 95)) ms"
                  + " (\(inPage.change.count) arrivals, \(inPage.missing) of \(written.count * 2) not received)")
            print("    write → floor shows step:  p50 \(percentile(inPage.floor, 50)) ms, p95 \(percentile(inPage.floor, 95)) ms"
                  + " (\(inPage.floor.count) arrivals)")
            print("  in the \(pages - 1) SSE clients (arrival = end of event read off the socket):")
            print("    write → change event:      p50 \(percentile(streams.change, 50)) ms, p95 \(percentile(streams.change, 95)) ms"
                  + " (\(streams.change.count) arrivals, \(streams.missing) of \(written.count * 2 * (pages - 1)) not received)")
            print("    write → floor shows step:  p50 \(percentile(streams.floor, 50)) ms, p95 \(percentile(streams.floor, 95)) ms"
                  + " (\(streams.floor.count) arrivals; \(listeners.map(\.reconnects).reduce(0, +)) reconnects after being dropped as slow)")
            print("  dashboard memory: \(idleRSS / 1024) MiB idle, \(openRSS / 1024) MiB with \(pages) viewers connected, "
                  + "peak (VmHWM) \(peakRSS / 1024) MiB; peak / idle \(String(format: "%.2f", Double(peakRSS) / Double(max(idleRSS, 1))))×")
        }
        dashboard.terminate()
        await dashboard.waitForExit()
    }

    struct Latencies {
        var change: [Double] = []
        var floor: [Double] = []
        var missing = 0
        mutating func add(_ other: Latencies) { change += other.change; floor += other.floor; missing += other.missing }
    }

    /// Matches each write to the viewer's arrivals. A change names only the device, not the
    /// state, and a dropped viewer misses some: a write's change is the first one naming the
    /// device that arrives from its start (less 1 ms of clock rounding) until the device's next
    /// write starts (6.4 s later; the last write has no bound). The floor answers a write when it
    /// first shows the device on that write's step.
    static func latencies(_ written: [(device: String, state: String, at: Double)], changes: [String: [Double]],
                          floors: [String: [(step: String, at: Double)]]) -> Latencies {
        var result = Latencies()
        let byDevice = Dictionary(grouping: written.sorted(by: { $0.at < $1.at }), by: \.device)
        for (device, writes) in byDevice {
            let arrivals = changes[device] ?? []
            for (index, write) in writes.enumerated() {
                let until = index + 1 < writes.count ? writes[index + 1].at : Double.infinity
                if let at = arrivals.first(where: { $0 >= write.at - 1 && $0 < until }) {
                    result.change.append(at - write.at)
                } else {
                    result.missing += 1
                }
                if let shown = floors[device]?.first(where: { $0.step == floorStep[write.state] && $0.at >= write.at - 1 }) {
                    result.floor.append(shown.at - write.at)
                } else {
                    result.missing += 1
                }
            }
        }
        return result
    }

    static func fingerprint(_ device: String) -> String {
        var hasher = Hasher()
        hasher.combine(device)
        let seed = UInt64(bitPattern: Int64(hasher.finalize()))
        return (0..<4).map { String(format: "%016llx", seed &* UInt64($0 + 1) &+ 0x9E37_79B9_7F4A_7C15) }.joined()
    }

    static func percentile(_ values: [Double], _ p: Int) -> Int {
        guard !values.isEmpty else { return -1 }
        let sorted = values.sorted()
        return Int(sorted[min(sorted.count - 1, sorted.count * p / 100)].rounded())
    }

    /// A field of /proc/PID/status in KiB (VmRSS now, VmHWM the peak).
    static func memory(of pid: Int32, _ field: String) -> Int {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BrowserFailure("socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw BrowserFailure("bind: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
