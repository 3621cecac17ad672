// keyline-bench: throughput figures for the closing notes, reported as ratios from one run
// (these machines are noisy). Run with `make bench`; `keyline-bench NAME…` runs only some.
// Each concern adds its own file with one `Benchmark` entry below.

import DeviceKeys

struct Benchmark {
    let name: String
    let run: () async throws -> Void
}

let benchmarks: [Benchmark] = [
    // one line per concern:
    Benchmark(name: "device-keys", run: deviceKeysBenchmark),
    Benchmark(name: "hostile-inputs", run: hostileInputBenchmark),
    Benchmark(name: "escrow", run: EscrowBenchmark.run),
    Benchmark(name: "escrow-store", run: EscrowStoreBenchmark.run),
    Benchmark(name: "registry", run: registryBenchmark),
    Benchmark(name: "dfu", run: DFUBenchmarks.run),
    Benchmark(name: "usb-standin", run: StandInBenchmark.run),
    Benchmark(name: "cloud-outbox", run: CloudOutboxBenchmark.run),
    Benchmark(name: "custody-rotation", run: RotationBenchmark.run),
    Benchmark(name: "dashboard", run: DashboardBenchmark.run),
    // Only on request (provision-bench.sh asks for it): the yardstick of the runner's CPU per device.
]

let onRequest: [Benchmark] = [
    // Fills a database with 1M registrations: `keyline-bench audit` (needs the release keyline beside it).
    Benchmark(name: "audit", run: auditBenchmark),
    Benchmark(name: "keygen-readback", run: keygenReadbackBenchmark),
]

// OpenSSL without its exit-time cleanup before libpq can initialise it (OpenSSLRuntime).
OpenSSLRuntime.prepare()
let wanted = Set(CommandLine.arguments.dropFirst())
for benchmark in benchmarks + onRequest
where wanted.isEmpty ? !onRequest.contains(where: { $0.name == benchmark.name }) : wanted.contains(benchmark.name) {
    if wanted.isEmpty { print("== \(benchmark.name)") }
    do { try await benchmark.run() } catch { print("benchmark \(benchmark.name) failed: \(error)") }
}
