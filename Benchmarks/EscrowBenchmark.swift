import DeviceKeys
import Escrow
import Age
import Foundation

/// Escrow throughput: backups per second for an RSA-1024 key (the 612-byte TCP slot size), and
/// MiB/s on a 64 MiB file for keyline's age implementation against Debian's `age` binary, file to
/// file, in the same run (ratios matter, absolute figures depend on the machine's load).
enum EscrowBenchmark {
    static func run() async throws {
        try backupsPerSecond()
        try await largeFile()
    }

    static func backupsPerSecond() throws {
        // DER length varies with the integers' leading bits (608-611 bytes in practice, within the
        // 612-byte TCP slot); take the largest of a few keys.
        var key = try DevicePrivateKey.generate(.rsa)
        for _ in 0..<40 where key.der.count < 612 {
            let candidate = try DevicePrivateKey.generate(.rsa)
            if candidate.der.count > key.der.count { key = candidate }
        }
        let backup = try EscrowBackup(deviceID: "e00fce68a1b2c3d4e5f60718", platform: "photon", product: "12345",
                                      privateKey: key, job: "bench", station: "bench")
        let identity = X25519Identity.generate()
        let recipients: [any AgeRecipient] = [identity.recipient]
        let file = try backup.encrypt(to: recipients)
        print("backup payload: RSA-1024 PKCS#1 DER \(key.der.count) bytes, JSON \(backup.encoded().count) bytes, age file \(file.count) bytes")

        let encrypt = try rate(seconds: 2) { _ = try backup.encrypt(to: recipients) }
        let decrypt = try rate(seconds: 2) { _ = try EscrowBackup.decrypt(file, identities: [identity]) }
        let ageOnly = try rate(seconds: 2) { _ = try Age.decrypt(file, identities: [identity]) }
        print(String(format: "backups encrypted: %8.0f /s", encrypt))
        print(String(format: "backups decrypted: %8.0f /s (age decrypt + document and key-pair check)", decrypt))
        print(String(format: "  of which age decrypt alone: %8.0f /s", ageOnly))
        // The rest is the key check (OpenSSL parses the DER and checks the RSA pair); EC is cheaper.
        let ecFile = try EscrowBackup(deviceID: "e00fce68a1b2c3d4e5f60718", platform: "boron", product: "12345",
                                      privateKey: try DevicePrivateKey.generate(.ec), job: "bench", station: "bench").encrypt(to: recipients)
        let ecDecrypt = try rate(seconds: 2) { _ = try EscrowBackup.decrypt(ecFile, identities: [identity]) }
        print(String(format: "  EC P-256 backups decrypted: %8.0f /s (for comparison)", ecDecrypt))
    }

    static func largeFile() async throws {
        let size = 64 << 20
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-bench-escrow-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

        var generator = SystemRandomNumberGenerator()
        var plaintext = [UInt8](repeating: 0, count: size)
        plaintext.withUnsafeMutableBytes { raw in
            for index in 0..<(size / 8) { raw.storeBytes(of: generator.next() as UInt64, toByteOffset: index * 8, as: UInt64.self) }
        }
        try Data(plaintext).write(to: URL(fileURLWithPath: path("plain.bin")))
        let identity = X25519Identity.generate()
        try identity.identityFile().write(toFile: path("identity.txt"), atomically: true, encoding: .utf8)
        let recipient = identity.recipient.description

        guard let age = ["/usr/bin/age", "/usr/local/bin/age"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            print("age binary not found: install Debian's `age` (make deps) to compare")
            return
        }
        let mib = Double(size) / Double(1 << 20)
        var best: [String: Double] = [:]
        for _ in 0..<3 {
            best["keyline encrypt", default: .infinity] = min(best["keyline encrypt", default: .infinity], try timed {
                try streamFile(path("plain.bin"), to: path("keyline.age")) { source, sink in
                    try Age.encrypt(from: &source, to: &sink, recipients: [identity.recipient])
                }
            })
            best["age encrypt", default: .infinity] = min(best["age encrypt", default: .infinity],
                try await timedProcess(age, ["-r", recipient, "-o", path("age.age"), path("plain.bin")]))
            // Both decrypt the file `age` wrote, so they do the same work.
            best["keyline decrypt", default: .infinity] = min(best["keyline decrypt", default: .infinity], try timed {
                try streamFile(path("age.age"), to: path("keyline.out")) { source, sink in
                    try Age.decrypt(from: &source, to: &sink, identities: [identity])
                }
            })
            best["age decrypt", default: .infinity] = min(best["age decrypt", default: .infinity],
                try await timedProcess(age, ["-d", "-i", path("identity.txt"), "-o", path("age.out"), path("age.age")]))
            try FileManager.default.removeItem(atPath: path("keyline.out"))
            try FileManager.default.removeItem(atPath: path("age.out"))
        }
        // In memory, without file I/O: the format's own cost.
        let ageFile = try readFile(path("age.age"))
        var memory: [String: Double] = [:]
        for _ in 0..<3 {
            memory["encrypt", default: .infinity] = min(memory["encrypt", default: .infinity], try timed { _ = try Age.encrypt(plaintext, to: [identity.recipient]) })
            memory["decrypt", default: .infinity] = min(memory["decrypt", default: .infinity], try timed { _ = try Age.decrypt(ageFile, identities: [identity]) })
        }
        // The outputs must be right for the figures to mean anything.
        let check = try Age.decrypt(try readFile(path("keyline.age")), identities: [identity])
        guard check == plaintext else { throw BenchmarkFailure("keyline's 64 MiB file did not round-trip") }

        print("64 MiB file to file, best of 3 (keyline's streaming API in-process; age as a process):")
        for operation in ["encrypt", "decrypt"] {
            let ours = mib / best["keyline \(operation)"]!, theirs = mib / best["age \(operation)"]!
            print(String(format: "  %@: keyline %7.1f MiB/s   age %7.1f MiB/s   keyline/age %.2f×", operation, ours, theirs, ours / theirs))
        }
        print(String(format: "  in memory (no file I/O): keyline encrypt %.1f MiB/s, decrypt %.1f MiB/s",
                     mib / memory["encrypt"]!, mib / memory["decrypt"]!))
    }

    /// Whole-file read with plain POSIX calls (no Data bridging).
    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchmarkFailure("open \(path): errno \(errno)") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw BenchmarkFailure("stat \(path): errno \(errno)") }
        let size = Int(info.st_size)
        return try [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            while count < size {
                let got = read(fd, buffer.baseAddress! + count, size - count)
                guard got > 0 else { throw BenchmarkFailure("read \(path): errno \(errno)") }
                count += got
            }
        }
    }

    /// Streams `input` to `output` through `body` (keyline's 64 KiB-chunk streaming API, as
    /// `age` streams), so both sides do the same file I/O.
    static func streamFile(_ input: String, to output: String,
                           _ body: (inout FileDescriptorSource, inout FileDescriptorSink) throws -> Void) throws {
        let inputFD = open(input, O_RDONLY | O_CLOEXEC)
        guard inputFD >= 0 else { throw BenchmarkFailure("open \(input): errno \(errno)") }
        defer { close(inputFD) }
        let outputFD = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard outputFD >= 0 else { throw BenchmarkFailure("create \(output): errno \(errno)") }
        defer { close(outputFD) }
        var source = FileDescriptorSource(descriptor: inputFD, path: input)
        var sink = FileDescriptorSink(descriptor: outputFD, path: output)
        try body(&source, &sink)
    }

    /// Operations per second over about `seconds`.
    static func rate(seconds: Double, _ body: () throws -> Void) throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        while true {
            try body()
            count += 1
            let elapsed = start.duration(to: clock.now)
            let elapsedSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            if elapsedSeconds >= seconds { return Double(count) / elapsedSeconds }
        }
    }

    static func timed(_ body: () throws -> Void) throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        try body()
        let elapsed = start.duration(to: clock.now)
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Wall time of a child process, waited for with a termination handler (no blocked thread).
    static func timedProcess(_ executable: String, _ arguments: [String]) async throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardError = FileHandle.nullDevice
        let clock = ContinuousClock()
        let start = clock.now
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        let elapsed = start.duration(to: clock.now)
        guard status == 0 else { throw BenchmarkFailure("\(executable) \(arguments.joined(separator: " ")) exited \(status)") }
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}

struct BenchmarkFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
