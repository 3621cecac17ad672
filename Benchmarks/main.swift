// keyline-bench: throughput figures for the closing notes, reported as ratios from one run
// (these machines are noisy). Run with `make bench`; `keyline-bench NAME…` runs only some.
// Each concern adds its own file with one `Benchmark` entry below.

struct Benchmark {
    let name: String
    let run: () async throws -> Void
}

let benchmarks: [Benchmark] = [
    // one line per concern:
    Benchmark(name: "device-keys", run: deviceKeysBenchmark),
    Benchmark(name: "escrow", run: EscrowBenchmark.run),
    Benchmark(name: "registry", run: registryBenchmark),
    Benchmark(name: "dfu", run: DFUBenchmarks.run),
    Benchmark(name: "usb-standin", run: StandInBenchmark.run),
]

let wanted = Set(CommandLine.arguments.dropFirst())
for benchmark in benchmarks where wanted.isEmpty || wanted.contains(benchmark.name) {
    print("== \(benchmark.name)")
    do { try await benchmark.run() } catch { print("benchmark \(benchmark.name) failed: \(error)") }
}
