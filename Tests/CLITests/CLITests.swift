import Foundation
import Testing
import TestSupport

@Suite struct KeylineHelp {
    @Test func helpDocumentsExitCodes() async throws {
        let result = try await KeylineBinary.run(["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("EXIT CODES"))
        #expect(result.stdout.contains("65"))
    }
}

@Suite struct KeylineBinaryRunner {
    /// Several MiB through stdin and back out: the runner must not deadlock on full pipes.
    @Test func largeStdinRoundTrip() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let identity = try await KeylineBinary.run(["escrow", "keygen", "-o", "id.txt"], in: dir.url)
        #expect(identity.status == 0, "\(identity.stderr)")
        let recipient = try await dir.shell("age-keygen -y id.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        let payload = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let encrypted = try await KeylineBinary.run(["escrow", "encrypt", "-r", recipient, "-a"], in: dir.url, stdin: payload)
        #expect(encrypted.status == 0, "\(encrypted.stderr)")
        let decrypted = try await KeylineBinary.run(["escrow", "decrypt", "-i", "id.txt", "-o", "out.bin"], in: dir.url, stdin: Data(encrypted.stdout.utf8))
        #expect(decrypted.status == 0, "\(decrypted.stderr)")
        #expect(Data(try dir.read("out.bin")) == payload)
    }
}
