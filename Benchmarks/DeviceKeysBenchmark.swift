import DeviceKeys
import Foundation

/// Keys generated per second (RSA-1024, EC P-256) and parsed + derived per second, and the same
/// generation through the `openssl` binary as `particle keys new` does it, in one run.
func deviceKeysBenchmark() async throws {
    let clock = ContinuousClock()

    func rate(_ label: String, seconds: Double = 2, _ body: () throws -> Void) rethrows -> Double {
        var count = 0
        let start = clock.now
        var elapsed = Duration.zero
        repeat {
            try body()
            count += 1
            elapsed = clock.now - start
        } while elapsed < .milliseconds(Int(seconds * 1000))
        let perSecond = Double(count) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        print("  \(label): \(String(format: "%.1f", perSecond))/s (\(count) in \(elapsed))")
        return perSecond
    }

    let rsaGenerate = try rate("generate RSA-1024 (PKCS#1 DER)") { _ = try DevicePrivateKey.generate(.rsa) }
    let ecGenerate = try rate("generate EC P-256 (SEC1 DER)") { _ = try DevicePrivateKey.generate(.ec) }

    let rsa = try DevicePrivateKey.generate(.rsa)
    let ec = try DevicePrivateKey.generate(.ec)
    let rsaSlot = rsa.der + [UInt8](repeating: 0xFF, count: 612 - rsa.der.count)
    let ecSlot = ec.der + [UInt8](repeating: 0xFF, count: 192 - ec.der.count)
    let rsaParse = try rate("parse RSA slot + derive SPKI + fingerprint") { _ = try DevicePrivateKey(slot: rsaSlot).publicKey.fingerprint }
    let ecParse = try rate("parse EC slot + derive SPKI + fingerprint") { _ = try DevicePrivateKey(slot: ecSlot).publicKey.fingerprint }

    // particle-cli runs `openssl genrsa` and `openssl ecparam -genkey` as child processes.
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-bench-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
    }
    let rsaCLI = try rate("openssl genrsa -traditional 1024 (child process)") { try openssl(["genrsa", "-traditional", "-out", "k.pem", "1024"]) }
    let ecCLI = try rate("openssl ecparam -genkey (child process)") { try openssl(["ecparam", "-name", "prime256v1", "-genkey", "-out", "k.pem"]) }

    print(String(format: "  ratios: EC/RSA generation %.1fx; keyline/openssl-binary RSA %.1fx, EC %.1fx; EC/RSA parse %.1fx",
                 ecGenerate / rsaGenerate, rsaGenerate / rsaCLI, ecGenerate / ecCLI, ecParse / rsaParse))
}
