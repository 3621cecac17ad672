import DeviceKeys
import Foundation

/// The yardstick for the provisioning runner's host CPU per device: what OpenSSL's own RSA-1024
/// key generation plus one read-back check (parsing the 612-byte slot as the runner does, with
/// the pairwise consistency check) cost, in CPU milliseconds per key, in this process.
/// Prints `keygen-readback-ms <value>` for Benchmarks/provision-bench.sh.
func keygenReadbackBenchmark() async throws {
    let rounds = 60
    let before = DFUBenchmarks.processCPUSeconds()
    for _ in 0..<rounds {
        let key = try DevicePrivateKey.generate(.rsa)
        let slot = key.der + [UInt8](repeating: 0xFF, count: 612 - key.der.count)
        let read = try DevicePrivateKey(slot: slot)
        precondition(read.publicKey.fingerprint == key.publicKey.fingerprint)
    }
    let perKey = (DFUBenchmarks.processCPUSeconds() - before) / Double(rounds) * 1000
    print(String(format: "keygen-readback-ms %.2f", perKey))
}
