import Foundation
import Testing
import TestSupport
import Age

/// Interop with Debian's `age` and `age-keygen` binaries, both directions.
@Suite struct AgeInteropTests {
    static let sizes = [0, 1, 611, 65_535, 65_536, 65_537, 200_000]

    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    @Test(arguments: sizes, [false, true])
    func keylineEncryptsAgeDecrypts(size: Int, armor: Bool) async throws {
        let age = try ExternalTool("age")
        let scratch = try ScratchDirectory(label: "escrow")
        let identity = X25519Identity.generate()
        let other = X25519Identity.generate()
        try identity.identityFile().write(to: scratch.file("identity.txt"), atomically: true, encoding: .utf8)
        let plaintext = Self.randomBytes(size)
        let file = try Age.encrypt(plaintext, to: [other.recipient, identity.recipient], armor: armor)
        try Data(file).write(to: scratch.file("backup.age"))

        let result = try await age.run(["-d", "-i", scratch.file("identity.txt").path, scratch.file("backup.age").path])
        #expect(result.status == 0, "age -d failed: \(result.stderr)")
        #expect(result.stdoutBytes == plaintext)
    }

    @Test(arguments: sizes, [false, true])
    func ageEncryptsKeylineDecrypts(size: Int, armor: Bool) async throws {
        let age = try ExternalTool("age")
        let identity = X25519Identity.generate()
        let plaintext = Self.randomBytes(size)
        let result = try await age.run(["-r", identity.recipient.description, "-r", X25519Identity.generate().recipient.description]
            + (armor ? ["-a"] : []), stdin: plaintext)
        #expect(result.status == 0, "age -r failed: \(result.stderr)")
        #expect(AgeArmor.isArmored(result.stdoutBytes) == armor)
        #expect(try Age.decrypt(result.stdoutBytes, identities: [identity]) == plaintext)
    }

    @Test func ageKeygenIdentityLoadsInKeyline() async throws {
        let keygen = try ExternalTool("age-keygen")
        let scratch = try ScratchDirectory(label: "escrow")
        let path = scratch.file("identity.txt").path
        let generated = try await keygen.run(["-o", path])
        #expect(generated.status == 0, "age-keygen failed: \(generated.stderr)")
        let identities = try X25519Identity.parseFile(String(contentsOfFile: path, encoding: .utf8))
        #expect(identities.count == 1)
        let derived = try await keygen.run(["-y", path])
        #expect(derived.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == identities[0].recipient.description)

        // And a file keyline encrypts to that recipient, `age` decrypts with that file.
        let file = try Age.encrypt(Array("hello".utf8), to: [identities[0].recipient])
        let age = try ExternalTool("age")
        let decrypted = try await age.run(["-d", "-i", path], stdin: file)
        #expect(decrypted.stdout == "hello")
    }

    @Test func keylineIdentityLoadsInAge() async throws {
        let keygen = try ExternalTool("age-keygen")
        let scratch = try ScratchDirectory(label: "escrow")
        let identity = X25519Identity.generate()
        try identity.identityFile().write(to: scratch.file("identity.txt"), atomically: true, encoding: .utf8)
        let derived = try await keygen.run(["-y", scratch.file("identity.txt").path])
        #expect(derived.status == 0, "age-keygen -y failed: \(derived.stderr)")
        #expect(derived.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == identity.recipient.description)
    }

    @Test func ageRecipientsFileParses() async throws {
        let keygen = try ExternalTool("age-keygen")
        let scratch = try ScratchDirectory(label: "escrow")
        var lines = ["# station recipients", ""]
        var identities: [X25519Identity] = []
        for index in 0..<3 {
            let path = scratch.file("id\(index).txt").path
            _ = try await keygen.run(["-o", path])
            let identity = try X25519Identity.parseFile(String(contentsOfFile: path, encoding: .utf8))[0]
            identities.append(identity)
            lines.append(identity.recipient.description)
        }
        let recipients = try X25519Recipient.parseFile(lines.joined(separator: "\n"))
        #expect(recipients == identities.map(\.recipient))
        let file = try Age.encrypt(Array("x".utf8), to: recipients)
        for (index, _) in identities.enumerated() {
            let age = try ExternalTool("age")
            let result = try await age.run(["-d", "-i", scratch.file("id\(index).txt").path], stdin: file)
            #expect(result.stdout == "x")
        }
    }
}
